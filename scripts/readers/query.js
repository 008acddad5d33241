#!/usr/bin/env node
// query.js runs one SQL statement in an in-memory DuckDB and prints the
// result rows as a JSON array of objects on stdout, so that sinkd's Go tests
// can check Parquet output with a reader that is not our own.
//
//   node query.js "SELECT count(*) AS n FROM read_parquet('/tmp/x/**/*.parquet')"
//
// DuckDB comes from the directory install.sh fills: $SINKD_READERS_DIR, or
// .cache/readers/ at the repository root.
//
// Values become JSON as a Go test wants to compare them: integers as numbers
// while they fit a double exactly, as decimal strings beyond that; decimals as
// numbers; timestamps as RFC 3339 strings in UTC with every stored fractional
// digit; dates and times as DuckDB prints them. Errors go to stderr with exit
// status 1.
'use strict';

const path = require('node:path');
const { createRequire } = require('node:module');

const readersDir =
  process.env.SINKD_READERS_DIR || path.join(__dirname, '..', '..', '.cache', 'readers');

function loadDuckDB() {
  const requireFromCache = createRequire(path.join(readersDir, 'package.json'));
  try {
    return requireFromCache('@duckdb/node-api');
  } catch (err) {
    throw new Error(
      `cannot load @duckdb/node-api from ${readersDir} (run scripts/readers/install.sh): ${err.message}`,
    );
  }
}

function safeInteger(n) {
  return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(n)
    : n.toString();
}

// rfc3339 formats an epoch count of 1/unitsPerSecond seconds. JS Dates carry
// milliseconds only, so whole seconds go through Date and the fraction is
// printed from the integer remainder.
function rfc3339(epoch, unitsPerSecond, fractionDigits) {
  let seconds = epoch / unitsPerSecond;
  let remainder = epoch % unitsPerSecond;
  if (remainder < 0n) {
    seconds -= 1n;
    remainder += unitsPerSecond;
  }
  const date = new Date(Number(seconds) * 1000);
  if (Number.isNaN(date.getTime())) {
    return null; // ±infinity or beyond what a JS Date holds; the caller prints DuckDB's text
  }
  const whole = date.toISOString().replace(/\.\d{3}Z$/, '');
  const fraction = remainder.toString().padStart(fractionDigits, '0').replace(/0+$/, '');
  return fraction ? `${whole}.${fraction}Z` : `${whole}Z`;
}

function makeConverter(duckdb) {
  const { DuckDBTypeId: T, JsonDuckDBValueConverter } = duckdb;
  const timestamp = (value, epoch, unitsPerSecond, digits) =>
    rfc3339(epoch, unitsPerSecond, digits) ?? value.toString();

  const convert = (value, type) => {
    if (value == null) {
      return null;
    }
    switch (type.typeId) {
      case T.BIGINT:
      case T.UBIGINT:
      case T.HUGEINT:
      case T.UHUGEINT:
      case T.BIGNUM:
        return safeInteger(value);
      case T.DECIMAL:
        return Number(value.toString());
      case T.TIMESTAMP:
      case T.TIMESTAMP_TZ:
        return timestamp(value, value.micros, 1_000_000n, 6);
      case T.TIMESTAMP_MS:
        return timestamp(value, value.millis, 1_000n, 3);
      case T.TIMESTAMP_S:
        return timestamp(value, value.seconds, 1n, 0);
      case T.TIMESTAMP_NS:
        return timestamp(value, value.nanos, 1_000_000_000n, 9);
      default:
        // Everything else, including lists and structs whose children come
        // back through convert, as DuckDB's own JSON conversion has it.
        return JsonDuckDBValueConverter(value, type, convert);
    }
  };
  return convert;
}

async function main(argv) {
  if (argv.length !== 1 || argv[0].trim() === '') {
    throw new Error('usage: node query.js <sql>');
  }
  const duckdb = loadDuckDB();
  const instance = await duckdb.DuckDBInstance.create(':memory:');
  try {
    const connection = await instance.connect();
    try {
      const reader = await connection.runAndReadAll(argv[0]);
      const rows = reader.convertRowObjects(makeConverter(duckdb));
      process.stdout.write(JSON.stringify(rows) + '\n');
    } finally {
      connection.closeSync();
    }
  } finally {
    instance.closeSync();
  }
}

main(process.argv.slice(2)).catch((err) => {
  process.stderr.write(`${err.message}\n`);
  process.exitCode = 1;
});
