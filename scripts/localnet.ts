// `npm start`: the local network launcher. The full launcher (3 authorities, 6+ relays, storage nodes,
// a client proxy) arrives with the circuits issue; until then this says so and exits non-zero.
console.error('bitcloud: the local network launcher is not built yet (it arrives with the relays/circuits work).');
console.error('Run `npm test` to exercise what exists today.');
process.exit(1);
