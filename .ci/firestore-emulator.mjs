// Launch the Firestore emulator (@firestore-emulator/server) on loopback only.
//
// The package is a library whose FirestoreServer.start() binds 0.0.0.0; the store tests must
// not open a port to the network, so this binds its gRPC server to 127.0.0.1 instead.
//
//   node .ci/firestore-emulator.mjs [--port N] [--exit-on-stdin-close] [--check]
//
// Port 0 (the default) picks a free port. Once listening, one line is printed on stdout:
//   listening 127.0.0.1:PORT
// and clients use FIRESTORE_EMULATOR_HOST=127.0.0.1:PORT. SIGTERM/SIGINT stop it; with
// --exit-on-stdin-close it also stops when its parent (the test session) goes away;
// --check stops right after printing that line (an install check).
import { webcrypto } from "node:crypto";
import { ServerCredentials } from "@grpc/grpc-js";
import { FirestoreServer } from "@firestore-emulator/server";

// The emulator calls the global `crypto` (for transaction ids), which Node 18 lacks.
globalThis.crypto ??= webcrypto;

const args = process.argv.slice(2);
let port = 0;
const portAt = args.indexOf("--port");
if (portAt >= 0) {
  port = Number.parseInt(args[portAt + 1] ?? "", 10);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`--port: expected 0-65535, got ${args[portAt + 1]}`);
    process.exit(2);
  }
}

const emulator = new FirestoreServer();
// FirestoreServer keeps its grpc Server in `server`; bind it ourselves to stay on loopback.
emulator.server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (err, bound) => {
  if (err) {
    console.error(`cannot bind 127.0.0.1:${port}: ${err.message}`);
    process.exit(1);
  }
  process.stdout.write(`listening 127.0.0.1:${bound}\n`);
  if (args.includes("--check")) stop();
});

const stop = () => {
  emulator.stop();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
if (args.includes("--exit-on-stdin-close")) {
  process.stdin.on("end", stop);
  process.stdin.on("close", stop);
  process.stdin.resume();
}
