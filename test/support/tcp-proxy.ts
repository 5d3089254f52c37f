import { connect, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

interface Pair {
  readonly client: Socket;
  readonly upstream: Socket;
  held: Buffer[];
}

/**
 * A TCP proxy in front of one Redis connection, to fail the network on cue in tests:
 * `cut()` drops every connection and refuses new ones until `restore()`; `stall()` holds what
 * clients send (nothing reaches Redis, nothing is lost) until `resume()`.
 */
export class TcpProxy {
  private readonly pairs = new Set<Pair>();
  private refusing = false;
  private stalled = false;
  private server?: Server;
  private traps: { match: (text: string) => boolean; hit: () => void }[] = [];

  constructor(private readonly targetPort: number) {}

  async start(): Promise<string> {
    this.server = createServer((client) => {
      if (this.refusing) {
        client.destroy();
        return;
      }
      const upstream = connect(this.targetPort, '127.0.0.1');
      const pair: Pair = { client, upstream, held: [] };
      this.pairs.add(pair);
      const drop = () => {
        this.pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
      client.on('data', (c: Buffer) => {
        const trap = this.traps.find((t) => t.match(c.toString('latin1')));
        if (trap) {
          this.traps.splice(this.traps.indexOf(trap), 1);
          this.stalled = true;
          trap.hit();
        }
        if (this.stalled) pair.held.push(c);
        else upstream.write(c);
      });
      upstream.on('data', (c: Buffer) => client.write(c));
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return `redis://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /**
   * Resolves when a client sends a chunk whose text (RESP) satisfies `match`: from that chunk on
   * nothing more reaches Redis (as `stall()`), so the command it carries never runs. Picks the
   * step of a client's sequence of commands at which a test then fails Redis (`cut()`, a restart).
   */
  trap(match: (text: string) => boolean): Promise<void> {
    return new Promise((resolve) => this.traps.push({ match, hit: resolve }));
  }

  cut(): void {
    this.refusing = true;
    for (const p of this.pairs) {
      p.client.destroy();
      p.upstream.destroy();
    }
    this.pairs.clear();
  }

  restore(): void {
    this.refusing = false;
  }

  stall(): void {
    this.stalled = true;
  }

  /** Everything held since `stall()`, as text (RESP commands). */
  held(): string {
    return [...this.pairs].map((p) => Buffer.concat(p.held).toString('latin1')).join('');
  }

  resume(): void {
    this.stalled = false;
    for (const p of this.pairs) for (const c of p.held.splice(0)) p.upstream.write(c);
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
