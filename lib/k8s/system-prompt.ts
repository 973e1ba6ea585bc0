/**
 * The agent's system prompt. It ships in a ConfigMap (not baked into the image) so a prompt
 * change is a reviewed diff in the GitOps repo and rolls the pods.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export class SystemPrompt {
  /** A prompt given inline. */
  public static fromText(text: string): SystemPrompt {
    if (!text.trim()) throw new Error(`'systemPrompt': SystemPrompt.fromText() got an empty prompt.`);
    return new SystemPrompt(text);
  }

  /**
   * A prompt read from a file at synth time (relative paths from the working directory, as
   * `cdk8s synth` runs). A missing file is an error naming the path.
   */
  public static fromFile(file: string): SystemPrompt {
    const absolute = path.resolve(file);
    let text: string;
    try {
      text = fs.readFileSync(absolute, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new Error(`'systemPrompt': cannot read the prompt file ${absolute} (${code ?? (err as Error).message}). Check the path; relative paths start from ${process.cwd()}.`);
    }
    if (!text.trim()) throw new Error(`'systemPrompt': the prompt file ${absolute} is empty.`);
    return new SystemPrompt(text, absolute);
  }

  private constructor(
    /** The prompt text. */
    public readonly text: string,
    /** The file it was read from, if any. */
    public readonly file?: string,
  ) {}
}
