// LZ4 for kafkajs, which ships only gzip: Chorus's producers compress with lz4 (Kafka's
// LZ4 is the standard LZ4 frame format). lz4js is a pure-JavaScript implementation, so
// nothing native is built.
import { CompressionCodecs, CompressionTypes } from "kafkajs";
// eslint-disable-next-line @typescript-eslint/no-require-imports
const lz4: { compress(data: Uint8Array): Uint8Array; decompress(data: Uint8Array): Uint8Array } = require("lz4js");

export function registerLz4(): void {
  CompressionCodecs[CompressionTypes.LZ4] = () => ({
    async compress(encoder: { buffer: Buffer }): Promise<Buffer> {
      return Buffer.from(lz4.compress(encoder.buffer));
    },
    async decompress(buffer: Buffer): Promise<Buffer> {
      return Buffer.from(lz4.decompress(buffer));
    },
  });
}
