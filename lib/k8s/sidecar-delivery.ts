/**
 * How the runtime reaches the pod: the compiled bundle (dist/sidecar.js) in a ConfigMap run by
 * the pinned official Node image (nothing to build or push), or a prebuilt image (the
 * Dockerfile at the package root).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ApiObject } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import type { Construct } from 'constructs';
import { checkPinnedImage } from './image';
import { RUNTIME_BUNDLE_KEY } from './runtime-container';

/** The official Node.js image the runtime is tested on (its user `node` is uid/gid 1000). */
export const NODE_IMAGE = 'docker.io/library/node:20.20.2-bookworm-slim';
/** Overrides where the bundle is read from (tests, unusual layouts). */
export const BUNDLE_PATH_ENV = 'CDK_AGENTS_SIDECAR_BUNDLE';
/** Kubernetes refuses objects over 1 MiB; this leaves room for metadata and the API server's own fields. */
export const MAX_BUNDLE_CONFIGMAP_BYTES = 900 * 1024;

/** Options for `SidecarDelivery.configMap`. */
export interface ConfigMapDeliveryOptions {
  /**
   * The Node.js image that runs the bundle (pinned).
   * @default docker.io/library/node:20.20.2-bookworm-slim
   */
  readonly nodeImage?: string;
  /**
   * The bundle file.
   * @default - $CDK_AGENTS_SIDECAR_BUNDLE, else the package's dist/sidecar.js
   */
  readonly bundlePath?: string;
}

/** The runtime bundle as read at synth. */
export interface SidecarBundle {
  readonly file: string;
  readonly content: string;
  readonly sha256: string;
}

const cache = new Map<string, { readonly mtimeMs: number; readonly size: number; readonly bundle: SidecarBundle }>();

export class SidecarDelivery {
  /** The bundle in a ConfigMap, mounted read-only and run by the pinned Node image. */
  public static configMap(options: ConfigMapDeliveryOptions = {}): SidecarDelivery {
    const image = options.nodeImage ?? NODE_IMAGE;
    checkPinnedImage('nodeImage', image);
    return new SidecarDelivery(image, true, options.bundlePath);
  }

  /** A prebuilt runtime image (the package's Dockerfile): no bundle ConfigMap. */
  public static image(ref: string): SidecarDelivery {
    checkPinnedImage('SidecarDelivery.image', ref);
    return new SidecarDelivery(ref, false, undefined);
  }

  private constructor(
    /** The image of the runtime container. */
    public readonly image: string,
    /** Whether the bundle ships in a ConfigMap. */
    public readonly bundled: boolean,
    private readonly bundlePath: string | undefined,
  ) {}

  /** @internal The bundle, read once per file version; a missing bundle is an error saying how to build it. */
  public _loadBundle(): SidecarBundle {
    const explicit = this.bundlePath ?? process.env[BUNDLE_PATH_ENV];
    // lib/k8s/*.ts in the source tree, dist/lib/k8s/*.js once compiled.
    const candidates = explicit ? [path.resolve(explicit)] : [path.join(__dirname, '..', '..', 'dist', 'sidecar.js'), path.join(__dirname, '..', '..', 'sidecar.js')];
    const file = candidates.find((f) => fs.existsSync(f));
    if (!file) {
      throw new Error(
        `the sidecar bundle is missing (looked for ${candidates.join(', ')}): run 'npm run build', ` +
          `or deliver the runtime as an image with 'sidecar: SidecarDelivery.image(...)'.`,
      );
    }
    const stat = fs.statSync(file);
    const hit = cache.get(file);
    if (hit && hit.mtimeMs === stat.mtimeMs && hit.size === stat.size) return hit.bundle;
    const content = fs.readFileSync(file, 'utf8');
    const bundle = { file, content, sha256: createHash('sha256').update(content).digest('hex') };
    cache.set(file, { mtimeMs: stat.mtimeMs, size: stat.size, bundle });
    return bundle;
  }
}

/**
 * The runtime bundle as a ConfigMap, refused when it would not fit Kubernetes' object limit. At
 * over 256 KiB it cannot be applied client-side (last-applied annotation), hence the Argo CD hint.
 */
export function bundleConfigMap(
  scope: Construct,
  id: string,
  metadata: { name: string; namespace?: string; labels: Record<string, string> },
  bundle: SidecarBundle,
  owner: string,
): kplus.ConfigMap {
  const configMap = new kplus.ConfigMap(scope, id, {
    metadata: { ...metadata, annotations: { 'argocd.argoproj.io/sync-options': 'ServerSideApply=true' } },
    data: { [RUNTIME_BUNDLE_KEY]: bundle.content },
  });
  const bytes = Buffer.byteLength(JSON.stringify(ApiObject.of(configMap).toJson()));
  if (bytes > MAX_BUNDLE_CONFIGMAP_BYTES) {
    throw new Error(
      `${owner}: the sidecar bundle ConfigMap would be ${Math.ceil(bytes / 1024)} KiB (${bundle.file}), over the ${MAX_BUNDLE_CONFIGMAP_BYTES / 1024} KiB budget under Kubernetes' 1 MiB object limit. ` +
        `Deliver the runtime as an image instead: 'sidecar: SidecarDelivery.image(...)' (see the Dockerfile).`,
    );
  }
  return configMap;
}
