/**
 * Shared pieces of the construct tests: charts in namespace `agents`, a small fixture bundle (so
 * snapshots do not change with every runtime build), and lookups into synthesized objects.
 */
import * as path from 'node:path';
import { Chart, Testing } from 'cdk8s';
import { Pods } from 'cdk8s-plus-28';
import type { Construct } from 'constructs';
import {
  AgentImage,
  AgentService,
  LlmProvider,
  SecretKey,
  SystemPrompt,
  BUNDLE_PATH_ENV,
  type AgentServiceProps,
} from '../../lib';

export const FIXTURE_BUNDLE = path.join(__dirname, 'fixtures', 'sidecar.js');
process.env[BUNDLE_PATH_ENV] = FIXTURE_BUNDLE;

export type Json = Record<string, any>;

export function chart(namespace = 'agents'): Chart {
  return new Chart(Testing.app(), 'test', { namespace, disableResourceNameHashes: true });
}

/** A chart with no namespace: objects go wherever they are applied. */
export function bareChart(): Chart {
  return new Chart(Testing.app(), 'test', { disableResourceNameHashes: true });
}

export function synth(c: Chart): Json[] {
  return Testing.synth(c) as Json[];
}

export function find(objects: Json[], kind: string, name: string): Json {
  const found = objects.find((o) => o.kind === kind && o.metadata?.name === name);
  if (!found) throw new Error(`no ${kind} ${name} in ${objects.map((o) => `${o.kind}/${o.metadata?.name}`).join(', ')}`);
  return found;
}

export function findAll(objects: Json[], kind: string): Json[] {
  return objects.filter((o) => o.kind === kind);
}

export function container(deployment: Json, name: string): Json {
  const found = deployment.spec.template.spec.containers.find((c: Json) => c.name === name);
  if (!found) throw new Error(`no container ${name}`);
  return found;
}

export function volume(deployment: Json, name: string): Json | undefined {
  return deployment.spec.template.spec.volumes.find((v: Json) => v.name === name);
}

export function env(c: Json, name: string): Json | undefined {
  return (c.env ?? []).find((e: Json) => e.name === name);
}

/** The sidecar config a ConfigMap carries. */
export function sidecarJson(objects: Json[], configMapName: string): Json {
  return JSON.parse(find(objects, 'ConfigMap', configMapName).data['sidecar.json']);
}

/** The smallest valid agent: pinned image, prompt, one direct provider. */
export function minimalProps(overrides: Partial<AgentServiceProps> = {}): AgentServiceProps {
  return {
    image: AgentImage.fromRegistry('ghcr.io/acme/support:1.4.2'),
    systemPrompt: SystemPrompt.fromText('You help customers with their orders.'),
    providers: [LlmProvider.openai({ apiKey: SecretKey.fromSecret('llm-keys', 'openai') })],
    ...overrides,
  };
}

export function agent(scope: Construct, id = 'SupportChat', overrides: Partial<AgentServiceProps> = {}): AgentService {
  return new AgentService(scope, id, minimalProps(overrides));
}

export function ingressPods(scope: Construct): Pods {
  return Pods.select(scope, 'Ingress', { labels: { 'app.kubernetes.io/name': 'ingress-nginx' } });
}
