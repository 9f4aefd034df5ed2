#!/usr/bin/env node
// Fit a multinomial logistic regression (softmax) on wine.csv with plain Node.js and save it to model.json.
//
//   node train.js [data.csv] [model.json]
//
// Features are standardized with the training mean and standard deviation; the weights are found by
// full-batch gradient descent with a small L2 penalty, from zeros, in a fixed number of steps: the same data
// always gives the same model.json, byte for byte.
'use strict';

const fs = require('fs');
const path = require('path');

const TARGET = 'target';
const STEPS = 3000;
const LEARNING_RATE = 0.5;
const L2 = 1e-3;

function readCsv(file) {
  const lines = fs.readFileSync(file, 'utf8').split(/\r?\n/).filter((line) => line.length > 0);
  const header = lines[0].split(',');
  const rows = lines.slice(1).map((line) => line.split(',').map(Number));
  return { header, rows };
}

function train(header, rows) {
  const targetAt = header.indexOf(TARGET);
  if (targetAt < 0) throw new Error(`no ${TARGET} column in ${header.join(', ')}`);
  const features = header.filter((name) => name !== TARGET);
  const at = features.map((name) => header.indexOf(name));
  const classes = [...new Set(rows.map((row) => row[targetAt]))].sort((a, b) => a - b);
  const n = rows.length;
  const d = features.length;
  const k = classes.length;

  const means = at.map((j) => rows.reduce((sum, row) => sum + row[j], 0) / n);
  const scales = at.map((j, f) => Math.sqrt(rows.reduce((sum, row) => sum + (row[j] - means[f]) ** 2, 0) / n) || 1);
  const x = rows.map((row) => at.map((j, f) => (row[j] - means[f]) / scales[f]));
  const y = rows.map((row) => classes.indexOf(row[targetAt]));

  const weights = Array.from({ length: k }, () => new Array(d).fill(0));
  const bias = new Array(k).fill(0);
  for (let step = 0; step < STEPS; step += 1) {
    const gradW = Array.from({ length: k }, () => new Array(d).fill(0));
    const gradB = new Array(k).fill(0);
    for (let i = 0; i < n; i += 1) {
      const p = softmax(weights.map((w, c) => bias[c] + dot(w, x[i])));
      for (let c = 0; c < k; c += 1) {
        const error = p[c] - (y[i] === c ? 1 : 0);
        gradB[c] += error / n;
        for (let f = 0; f < d; f += 1) gradW[c][f] += (error * x[i][f]) / n;
      }
    }
    for (let c = 0; c < k; c += 1) {
      bias[c] -= LEARNING_RATE * gradB[c];
      for (let f = 0; f < d; f += 1) weights[c][f] -= LEARNING_RATE * (gradW[c][f] + L2 * weights[c][f]);
    }
  }
  return { kind: 'softmax-regression', features, classes, means, scales, weights, bias };
}

function dot(a, b) {
  let sum = 0;
  for (let i = 0; i < a.length; i += 1) sum += a[i] * b[i];
  return sum;
}

function softmax(scores) {
  const top = Math.max(...scores);
  const exps = scores.map((s) => Math.exp(s - top));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / total);
}

if (require.main === module) {
  const data = process.argv[2] || path.join(__dirname, 'wine.csv');
  const out = process.argv[3] || path.join(__dirname, 'model.json');
  const { header, rows } = readCsv(data);
  const model = train(header, rows);
  fs.writeFileSync(out, JSON.stringify(model, null, 1) + '\n');
  const { predict } = require('./model.js');
  const columns = model.features;
  const table = Object.fromEntries(columns.map((name) => [name, rows.map((row) => row[header.indexOf(name)])]));
  const labels = predict(model, columns, table).predictions;
  const right = labels.filter((label, i) => label === rows[i][header.indexOf(TARGET)]).length;
  console.log(`wrote ${out}: ${model.classes.length} classes, training accuracy ${(right / rows.length).toFixed(3)}`);
}

module.exports = { train, readCsv };
