#!/usr/bin/env node
// Compiles the Chorus contracts with solc-js and writes one JSON artifact per contract.
//
//   node infra/contracts/build.mjs [outDir]      (default: infra/contracts/artifacts)
//
// solc and @openzeppelin/contracts are taken from $CHORUS_HOME/npm/node_modules
// (CHORUS_HOME defaults to $HOME/.chorus). Every .sol file in infra/contracts/src and
// infra/contracts/test is compiled; each contract defined in those files (not the imported
// OpenZeppelin ones) becomes <outDir>/<ContractName>.json:
//   {"contractName", "sourceName", "abi", "bytecode", "deployedBytecode", "compiler"}
// The output depends only on the sources and the compiler, so it is byte-identical across runs
// and checkouts.

import { createRequire } from "node:module";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const CONTRACTS_DIR = path.dirname(fileURLToPath(import.meta.url));
const SOURCE_DIRS = ["src", "test"];

function fail(message) {
  console.error(`build.mjs: ${message}`);
  process.exit(1);
}

const chorusHome = process.env.CHORUS_HOME || path.join(os.homedir(), ".chorus");
const nodeModules = path.join(chorusHome, "npm", "node_modules");
if (!fs.existsSync(path.join(nodeModules, "solc"))) {
  fail(`solc not found in ${nodeModules} (set CHORUS_HOME, or install the packages in infra/contracts/package.json there)`);
}
const require = createRequire(path.join(nodeModules, "noop.js"));
const solc = require("solc");

const outDir = path.resolve(process.argv[2] ?? path.join(CONTRACTS_DIR, "artifacts"));

// Sources are keyed by their path relative to infra/contracts, with forward slashes, so the
// metadata (and therefore the bytecode) does not depend on where the repository is checked out.
const sources = {};
for (const dir of SOURCE_DIRS) {
  const abs = path.join(CONTRACTS_DIR, dir);
  if (!fs.existsSync(abs)) continue;
  for (const name of fs.readdirSync(abs).filter((n) => n.endsWith(".sol")).sort()) {
    sources[`${dir}/${name}`] = { content: fs.readFileSync(path.join(abs, name), "utf8") };
  }
}
if (Object.keys(sources).length === 0) fail(`no .sol files in ${SOURCE_DIRS.join(", ")}`);

// Imports: only "@openzeppelin/..." paths, read from node_modules. (Relative imports inside the
// OpenZeppelin files reach here already resolved to "@openzeppelin/..." by the compiler.)
function findImports(importPath) {
  if (!importPath.startsWith("@openzeppelin/")) {
    return { error: `import "${importPath}" not found (only @openzeppelin/... is resolved from node_modules)` };
  }
  const resolved = path.resolve(nodeModules, importPath);
  if (!resolved.startsWith(nodeModules + path.sep)) return { error: `import "${importPath}" escapes node_modules` };
  try {
    return { contents: fs.readFileSync(resolved, "utf8") };
  } catch (e) {
    return { error: `import "${importPath}": ${e.message}` };
  }
}

const input = {
  language: "Solidity",
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    // paris: no PUSH0/MCOPY/transient storage, safe on BSC and any pre-Shanghai chain.
    evmVersion: "paris",
    outputSelection: {
      "*": { "*": ["abi", "evm.bytecode.object", "evm.bytecode.linkReferences", "evm.deployedBytecode.object"] },
    },
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
const diagnostics = output.errors ?? [];
for (const d of diagnostics) {
  const text = (d.formattedMessage ?? d.message).trimEnd();
  console.error(text);
}
const errors = diagnostics.filter((d) => d.severity === "error");
if (errors.length > 0) fail(`compilation failed with ${errors.length} error(s)`);

const compiler = solc.version();
const artifacts = new Map();
for (const sourceName of Object.keys(sources)) {
  const contracts = output.contracts?.[sourceName] ?? {};
  for (const contractName of Object.keys(contracts).sort()) {
    const c = contracts[contractName];
    if (Object.keys(c.evm.bytecode.linkReferences ?? {}).length > 0) {
      fail(`${sourceName}:${contractName} needs library linking, which this script does not do`);
    }
    if (artifacts.has(contractName)) {
      fail(`contract name ${contractName} is defined in both ${artifacts.get(contractName).sourceName} and ${sourceName}`);
    }
    artifacts.set(contractName, {
      contractName,
      sourceName,
      abi: c.abi,
      bytecode: `0x${c.evm.bytecode.object}`,
      deployedBytecode: `0x${c.evm.deployedBytecode.object}`,
      compiler,
    });
  }
}

fs.mkdirSync(outDir, { recursive: true });
for (const [name, artifact] of artifacts) {
  fs.writeFileSync(path.join(outDir, `${name}.json`), `${JSON.stringify(artifact, null, 2)}\n`);
}
const stale = fs.readdirSync(outDir).filter((n) => n.endsWith(".json") && !artifacts.has(n.slice(0, -5)));
for (const n of stale) console.error(`build.mjs: warning: ${path.join(outDir, n)} is not produced by this build (stale?)`);
console.log(`build.mjs: ${artifacts.size} artifact(s) written to ${outDir} (solc ${compiler})`);
