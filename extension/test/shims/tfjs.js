// What @vladmandic/face-api's no-bundle build imports as '@tensorflow/tfjs',
// for test/face_api.mjs: our tfjs-core and converter. face-api calls chained
// ops (tensor.as3D(), ...), which tfjs-core registers only on request.
import '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops.js';

export * from '@tensorflow/tfjs-core';
export * from '@tensorflow/tfjs-converter';
