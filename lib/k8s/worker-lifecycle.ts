/**
 * How a queue worker's sidecar outlives its agent on Kubernetes 1.28, where a sidecar is an
 * ordinary container: the agent creates (or touches) a "done" file in a shared emptyDir when it
 * exits, and the sidecar keeps serving LLM calls until then. Both pieces are `node -e` scripts,
 * since node is the one program the runtime image is known to have.
 */
import * as k8s from 'cdk8s-plus-28/lib/imports/k8s';

/** The emptyDir both containers mount. */
export const WORKER_LIFECYCLE_VOLUME = 'worker-lifecycle';
export const WORKER_LIFECYCLE_DIR = '/var/run/cdk-agents-worker';
/** The file the agent creates or touches when it exits (env AGENT_WORKER_DONE_FILE). */
export const WORKER_DONE_FILE = `${WORKER_LIFECYCLE_DIR}/done`;
/** How often the scripts look for the file. */
const POLL_MS = 500;

/**
 * The sidecar's preStop hook: returns once the agent has written the done file since termination
 * began (a file left by an earlier crash of the agent container does not count), or after
 * `maxSeconds`; the kubelet then sends the sidecar SIGTERM and it drains.
 */
export function waitForAgentExit(file: string, maxSeconds: number): k8s.Lifecycle {
  const script =
    `const fs=require('fs'),f=${JSON.stringify(file)},t=Date.now()-1000,e=Date.now()+${maxSeconds * 1000};` +
    `(function w(){let m=0;try{m=fs.statSync(f).mtimeMs}catch{}m>=t||Date.now()>=e?process.exit(0):setTimeout(w,${POLL_MS})})()`;
  return { preStop: { exec: { command: ['node', '-e', script] } } };
}

/**
 * The command prefix that runs the runtime under a supervisor in a Job pod: it starts the rest of
 * its arguments as a child (with this node), forwards SIGTERM and SIGINT to it, sends it SIGTERM
 * once the done file exists (so the runtime drains and exits, and the Job completes), and exits
 * with the child's status.
 */
export function superviseUntilAgentExit(file: string): string[] {
  const script =
    `const{spawn}=require('child_process'),fs=require('fs'),os=require('os'),f=${JSON.stringify(file)};` +
    `const c=spawn(process.execPath,process.argv.slice(1),{stdio:'inherit'});let s=0;` +
    `const stop=()=>{if(!s){s=1;c.kill('SIGTERM')}};process.on('SIGTERM',stop);process.on('SIGINT',stop);` +
    `const i=setInterval(()=>{if(fs.existsSync(f))stop()},${POLL_MS});` +
    `c.on('error',e=>{console.error(e.message);process.exit(1)});` +
    `c.on('exit',(code,sig)=>{clearInterval(i);process.exit(code===null?128+(os.constants.signals[sig]||0):code)})`;
  return ['node', '-e', script, '--'];
}
