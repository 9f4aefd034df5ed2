#!/usr/bin/env node
// Serve model.json over corral-external/1: length-prefixed JSON frames on stdin and stdout.
//
//   node model.js            (corral starts it in the model folder; see docs/external-models.md)
//
// Every frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON. The first frame out is the
// handshake; then each request {"columns": [...], "data": {column: [values]}} gets one answer
// {"predictions": [...], "probabilities": [[...], ...]} or {"error": "..."}. stdout carries frames only:
// console.log is sent to stderr, which corral logs.
'use strict';

const fs = require('fs');
const path = require('path');

const PROTOCOL = 'corral-external/1';

/** Predict every row of a column-oriented table: labels and class probabilities. */
function predict(model, columns, data) {
  const missing = model.features.filter((name) => !Array.isArray(data[name]));
  if (missing.length > 0) throw new InputError(`missing feature column(s): ${missing.join(', ')}`);
  const rows = data[model.features[0]].length;
  const predictions = [];
  const probabilities = [];
  for (let i = 0; i < rows; i += 1) {
    // a missing value (null) is scored as the training mean: its standardized value is 0
    const x = model.features.map((name, f) => {
      const value = data[name][i];
      if (value === null || value === undefined) return 0;
      if (typeof value !== 'number') throw new InputError(`${name} row ${i} is ${JSON.stringify(value)}, not a number`);
      return (value - model.means[f]) / model.scales[f];
    });
    const scores = model.weights.map((w, c) => model.bias[c] + w.reduce((sum, wf, f) => sum + wf * x[f], 0));
    const p = softmax(scores);
    let best = 0;
    for (let c = 1; c < p.length; c += 1) if (p[c] > p[best]) best = c;
    predictions.push(model.classes[best]);
    probabilities.push(p);
  }
  return { predictions, probabilities };
}

function softmax(scores) {
  const top = Math.max(...scores);
  const exps = scores.map((s) => Math.exp(s - top));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / total);
}

class InputError extends Error {}

function serve(model) {
  console.log = console.error; // stdout is the channel: anything printed goes to the log instead
  send({ protocol: PROTOCOL, ready: true, name: 'wine softmax regression (Node.js)' });
  let buffered = Buffer.alloc(0);
  process.stdin.on('data', (chunk) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 4) {
      const size = buffered.readUInt32BE(0);
      if (buffered.length < 4 + size) break;
      const payload = buffered.subarray(4, 4 + size);
      buffered = buffered.subarray(4 + size);
      send(answer(model, payload));
    }
  });
  process.stdin.on('end', () => process.exit(0)); // corral closed the channel: stop
}

function answer(model, payload) {
  try {
    const request = JSON.parse(payload.toString('utf8'));
    return predict(model, request.columns, request.data);
  } catch (error) {
    return { error: error.message, invalid_input: error instanceof InputError };
  }
}

function send(message) {
  const body = Buffer.from(JSON.stringify(message), 'utf8');
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.length, 0);
  process.stdout.write(Buffer.concat([header, body]));
}

if (require.main === module) {
  serve(JSON.parse(fs.readFileSync(path.join(__dirname, 'model.json'), 'utf8')));
}

module.exports = { predict, PROTOCOL };
