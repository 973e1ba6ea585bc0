/**
 * References to secret values: where the runtime reads a key or token at start. Config never
 * holds a secret itself.
 */
import * as z from 'zod';

const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A reference to a secret value: an environment variable or a mounted file. Never the value itself. */
export const SecretRefSchema = z
  .strictObject(
    {
      env: z.string().regex(ENV_NAME_PATTERN, { error: 'must be an environment variable name' }).optional(),
      file: z.string().regex(/^\//, { error: 'must be an absolute file path' }).optional(),
    },
    {
      error: (issue) =>
        issue.code === 'invalid_type'
          ? 'must be a reference {"env": "NAME"} or {"file": "/path"}, never a literal secret'
          : undefined,
    },
  )
  .refine((ref) => (ref.env === undefined) !== (ref.file === undefined), {
    error: 'give exactly one of "env" or "file"',
  })
  .describe('Where the runtime reads a secret from at start: an environment variable or a mounted file.');

export type SecretRef = z.output<typeof SecretRefSchema>;
