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
// Values become JSON so that a reader can tell integers from fractions by the
// text alone: integers print exactly, however large, without a decimal point
// (a JSON parser that reads numbers as doubles rounds them past 2^53; Go's
// json.Number does not); DECIMALs print DuckDB's exact text
// ("12.34", "0.00"); FLOATs and DOUBLEs always carry a point or an exponent
// ("1.0"). Timestamps are RFC 3339 strings in UTC with every stored
// fractional digit; dates and times print as DuckDB prints them. Errors go to
// stderr with exit status 1.
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

// NumberText is a JSON number given as text, printed as is by toJSON.
class NumberText {
  constructor(text) {
    this.text = text;
  }
}

// fraction prints a FLOAT or DOUBLE with a point even when it is integral
// ("1.0"), so that its column decodes to one Go type whatever the value.
function fraction(n) {
  if (typeof n !== 'number') {
    return n; // NaN and ±Infinity, which DuckDB's JSON conversion spells as strings
  }
  return new NumberText(Number.isInteger(n) ? n.toFixed(1) : String(n));
}

// toJSON is JSON.stringify that prints NumberText verbatim.
function toJSON(v) {
  if (v instanceof NumberText) {
    return v.text;
  }
  if (Array.isArray(v)) {
    return `[${v.map(toJSON).join(',')}]`;
  }
  if (v !== null && typeof v === 'object') {
    return `{${Object.entries(v)
      .map(([k, x]) => `${JSON.stringify(k)}:${toJSON(x)}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
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
        return new NumberText(value.toString());
      case T.DECIMAL:
        return new NumberText(value.toString());
      case T.FLOAT:
      case T.DOUBLE:
        return fraction(JsonDuckDBValueConverter(value, type, convert));
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
      process.stdout.write(toJSON(rows) + '\n');
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
