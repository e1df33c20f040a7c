// Preloaded with NODE_OPTIONS="--import …/cpu-prof-preload.mjs" (Node 20 refuses --cpu-prof in
// NODE_OPTIONS) when BITCLOUD_CPU_PROF_DIR is set: the inspector's profiler starts on SIGUSR2
// (so start-up is left out) and $BITCLOUD_CPU_PROF_DIR/<pid>.cpuprofile is written when the
// process exits. Used by profile-circuit.ts.
import fs from 'node:fs';
import path from 'node:path';
import inspector from 'node:inspector';

const dir = process.env.BITCLOUD_CPU_PROF_DIR;
if (dir) {
  const session = new inspector.Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 250 });
  let started = false;
  process.on('SIGUSR2', () => {
    if (started) return;
    started = true;
    session.post('Profiler.start');
  });
  process.once('exit', () => {
    if (!started) return;
    session.post('Profiler.stop', (e, r) => {
      if (!e) fs.writeFileSync(path.join(dir, `${process.pid}.cpuprofile`), JSON.stringify(r.profile));
    });
  });
}
