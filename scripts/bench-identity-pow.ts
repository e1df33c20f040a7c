// SPEC.md §6.4.1: the cost of one identity proof evaluation (argon2id) at the default and local
// parameters: CPU time (process.cpuUsage, robust on a loaded machine) and wall time, minimum of
// --runs runs, and the expected mining cost at the default difficulty.
import { argon2id } from '../src/crypto/primitives';
import { DEFAULT_POW_PARAMS, LOCAL_POW_PARAMS, powSalt } from '../src/dir/identity-pow';

const runsArg = process.argv.indexOf('--runs');
const runs = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 5;
const identity = Buffer.alloc(32, 7);

async function main(): Promise<void> {
  for (const [name, p] of [['default', DEFAULT_POW_PARAMS], ['local', LOCAL_POW_PARAMS]] as const) {
    const cpu: number[] = [], wall: number[] = [];
    for (let i = 0; i < runs; i++) {
      const c0 = process.cpuUsage(), t0 = process.hrtime.bigint();
      await argon2id(Buffer.from(`bench ${i}`), powSalt(identity), p.memoryKib, p.ops);
      const c = process.cpuUsage(c0);
      wall.push(Number(process.hrtime.bigint() - t0) / 1e6);
      cpu.push((c.user + c.system) / 1000);
    }
    const minCpu = Math.min(...cpu);
    console.log(`${name}: ${p.memoryKib / 1024} MiB, ops ${p.ops}, difficulty ${p.difficulty}: one evaluation `
      + `cpu min ${minCpu.toFixed(0)} ms, wall min ${Math.min(...wall).toFixed(0)} ms (${runs} runs); `
      + `expected mining ${(2 ** p.difficulty * minCpu / 1000).toFixed(1)} s of one core`);
  }
}
void main();
