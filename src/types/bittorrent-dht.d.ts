// bittorrent-dht (v11) is untyped; this declares the part src/storage/dht.ts uses (its README is
// the reference). Only src/storage/dht.ts imports the module.
declare module 'bittorrent-dht' {
  import { EventEmitter } from 'node:events';

  export interface DhtPeer { host: string; port: number }
  export interface DhtNodeAddress { host: string; port: number; id?: Buffer }

  export interface DhtOptions {
    nodeId?: Buffer | string;
    /** Bootstrap nodes, or false for none. Left undefined, the library uses the PUBLIC routers. */
    bootstrap?: Array<string | DhtPeer> | false;
    host?: string | false;
    concurrency?: number;
    timeBucketOutdated?: number;
    maxAge?: number;
    maxValues?: number;
    /** BEP 44: Ed25519 verification of mutable items. */
    verify?: (signature: Buffer, message: Buffer, publicKey: Buffer) => boolean;
    /** k-rpc: per-query timeout in ms (default 2000). */
    timeout?: number;
  }

  export interface DhtPutOptions {
    v: Buffer;
    k?: Buffer;
    seq?: number;
    cas?: number;
    salt?: Buffer;
    sign?: (message: Buffer) => Buffer;
    sig?: Buffer;
  }

  export interface DhtGetResult {
    v: Buffer;
    id: Buffer;
    k?: Buffer;
    sig?: Buffer;
    seq?: number;
    salt?: Buffer;
  }

  export default class DHT extends EventEmitter {
    constructor(opts?: DhtOptions);
    readonly nodeId: Buffer;
    readonly listening: boolean;
    readonly destroyed: boolean;
    ready?: boolean;
    /** @internal k-rpc instance; `bootstrap` holds the parsed bootstrap list. */
    readonly _rpc: { bootstrap: DhtPeer[]; socket: { socket: import('node:dgram').Socket } };
    listen(port?: number, address?: string, onlistening?: () => void): void;
    address(): { address: string; family: string; port: number };
    addNode(node: DhtNodeAddress): void;
    toJSON(): { nodes: DhtPeer[]; values: Record<string, unknown> };
    announce(infoHash: Buffer | string, port: number, cb?: (err: Error | null) => void): void;
    lookup(infoHash: Buffer | string, cb?: (err: Error | null, n: number) => void): () => void;
    put(opts: DhtPutOptions, cb?: (err: (Error & { code?: number }) | null, hash: Buffer, n: number) => void): Buffer;
    get(key: Buffer | string, opts: { salt?: Buffer; cache?: boolean; verify?: DhtOptions['verify'] }, cb: (err: Error | null, res: DhtGetResult | null) => void): void;
    destroy(cb?: () => void): void;
  }
}
