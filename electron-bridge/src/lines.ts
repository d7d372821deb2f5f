// Splits the sidecar's stdout into lines. Chunks arrive at arbitrary boundaries; a
// line longer than the limit (a runaway or corrupt writer) is dropped and reported
// once instead of growing memory without bound, and reading resumes after its newline.

export interface LineHandlers {
  line(text: string): void;
  overlong(bytes: number): void;
}

const NEWLINE = 0x0a;

export class LineSplitter {
  private parts: Buffer[] = [];
  private size = 0;
  private skipping = false; // inside an overlong line: discard up to the next newline
  private skipped = 0;

  constructor(
    private readonly handlers: LineHandlers,
    private readonly maxBytes = 16 * 1024 * 1024,
  ) {}

  push(chunk: Buffer): void {
    let start = 0;
    while (start < chunk.length) {
      const newline = chunk.indexOf(NEWLINE, start);
      const end = newline === -1 ? chunk.length : newline;
      this.take(chunk.subarray(start, end));
      if (newline === -1) return;
      this.finishLine();
      start = newline + 1;
    }
  }

  /** End of stream: a last line without a newline still counts. */
  end(): void {
    if (this.size > 0 || this.skipping) this.finishLine();
  }

  private take(piece: Buffer): void {
    if (this.skipping) {
      this.skipped += piece.length;
      return;
    }
    if (this.size + piece.length > this.maxBytes) {
      this.skipping = true;
      this.skipped = this.size + piece.length;
      this.parts = [];
      this.size = 0;
      return;
    }
    if (piece.length > 0) {
      // Copy: the caller's chunk buffer may be pooled and reused.
      this.parts.push(Buffer.from(piece));
      this.size += piece.length;
    }
  }

  private finishLine(): void {
    if (this.skipping) {
      this.skipping = false;
      this.handlers.overlong(this.skipped);
      this.skipped = 0;
      return;
    }
    // Bytes are joined before decoding so a UTF-8 sequence split across chunks survives.
    let text = Buffer.concat(this.parts, this.size).toString('utf8');
    this.parts = [];
    this.size = 0;
    if (text.endsWith('\r')) text = text.slice(0, -1);
    if (text.trim() !== '') this.handlers.line(text);
  }
}
