/**
 * Container images, pinned: a floating tag makes two synths of the same code run different
 * software, and a rollback roll forward.
 */
import { ImagePullPolicy } from 'cdk8s-plus-28';

const DIGEST = /@sha256:[a-f0-9]{64}$/;
/** A version with at least major.minor (1.4, v1.4.2, 20.20.2-bookworm-slim). A bare major (node:20) moves. */
const VERSION_TAG = /^v?\d+\.\d+(\.\d+)*([-+_.][0-9A-Za-z][0-9A-Za-z._-]*)?$/;
/** A commit (sha-1a2b3c4, git-1a2b3c4d, 1a2b3c4d) or a dated build (2024-05-01, 20240501.1). */
const BUILD_TAG = /^((sha-|git-|g)?[0-9a-f]{7,64}|\d{4}-?\d{2}-?\d{2}([-T._][0-9A-Za-z._-]+)?)$/;

/** Why an image reference is not pinned, and how to pin it. */
export interface UnpinnedImage {
  readonly problem: string;
  /** Absent when `ref` is not an image reference at all. */
  readonly fix?: string;
}

/**
 * Why `ref` may run different software from one pull to the next (no tag, `latest`, a floating
 * tag, a malformed digest); undefined when a digest or a version or build tag pins it.
 */
export function unpinnedImage(ref: string): UnpinnedImage | undefined {
  if (!ref || /\s/.test(ref)) return { problem: 'is not an image reference' };
  const fix = `pin a version tag (${example(ref)}:1.4.2) or a digest (${example(ref)}@sha256:...)`;
  if (DIGEST.test(ref)) return undefined;
  if (ref.includes('@')) return { problem: 'has a malformed digest', fix };
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  if (colon <= slash) return { problem: "has no tag, so it runs whatever 'latest' is at pull time", fix };
  const tag = ref.slice(colon + 1);
  if (tag === 'latest') return { problem: "uses 'latest'", fix };
  if (!VERSION_TAG.test(tag) && !BUILD_TAG.test(tag)) return { problem: `uses the floating tag '${tag}'`, fix };
  return undefined;
}

/** Throws unless `ref` names an image by digest or by a version tag. */
export function checkPinnedImage(prop: string, ref: string): void {
  const unpinned = unpinnedImage(ref);
  if (!unpinned) return;
  if (!unpinned.fix) throw new Error(`'${prop}' ('${ref}') ${unpinned.problem}.`);
  throw new Error(`'${prop}' (${ref}) ${unpinned.problem}: ${unpinned.fix}.`);
}

function example(ref: string): string {
  const at = ref.indexOf('@');
  const base = at < 0 ? ref : ref.slice(0, at);
  const slash = base.lastIndexOf('/');
  const colon = base.lastIndexOf(':');
  return colon > slash ? base.slice(0, colon) : base;
}

/** Options for `AgentImage.fromRegistry`. */
export interface AgentImageOptions {
  /**
   * When the kubelet pulls the image.
   * @default ImagePullPolicy.IF_NOT_PRESENT (a pinned image never changes under its tag)
   */
  readonly pullPolicy?: ImagePullPolicy;
}

/** The agent's container image, pinned by version tag or digest. */
export class AgentImage {
  /**
   * An image from a registry: `ghcr.io/acme/support:1.4.2` or `ghcr.io/acme/support@sha256:...`.
   * `latest`, no tag, or a floating tag (`main`, `stable`, `20`) are errors.
   */
  public static fromRegistry(ref: string, options: AgentImageOptions = {}): AgentImage {
    checkPinnedImage('image', ref);
    return new AgentImage(ref, options.pullPolicy ?? ImagePullPolicy.IF_NOT_PRESENT);
  }

  private constructor(
    /** The image reference. */
    public readonly ref: string,
    /** When the kubelet pulls it. */
    public readonly pullPolicy: ImagePullPolicy,
  ) {}
}
