// Compile Pausable.sol with the npm solc package into pausable.json (ABI, bytecode, compiler version).
// Run from this folder: node compile_pausable.js. evmVersion paris keeps the bytecode runnable on ganache 7.9.
const fs = require("fs");
const path = require("path");
const solc = require(path.join(__dirname, "..", "ethereum", "node_modules", "solc"));

const source = fs.readFileSync(path.join(__dirname, "Pausable.sol"), "utf8");
const input = {
  language: "Solidity",
  sources: { "Pausable.sol": { content: source } },
  settings: { evmVersion: "paris", optimizer: { enabled: true, runs: 200 }, outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } } },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((error) => error.severity === "error");
if (errors.length) {
  console.error(errors.map((error) => error.formattedMessage).join("\n"));
  process.exit(1);
}
const contract = output.contracts["Pausable.sol"].Pausable;
const fixture = { compiler: `solc ${solc.version()}`, abi: contract.abi, bytecode: "0x" + contract.evm.bytecode.object };
fs.writeFileSync(path.join(__dirname, "pausable.json"), JSON.stringify(fixture, null, 2) + "\n");
console.log(`wrote pausable.json with ${fixture.compiler}`);
