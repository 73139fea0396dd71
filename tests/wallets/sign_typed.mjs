// Signs Chorus actions with viem (a wallet library nobody on the project wrote), from
// the EIP-712 types as docs/security.md publishes them. Reads a JSON array on stdin:
//   [{"key": "0x<private key>", "chainId": 56, "verifyingContract": "0x...",
//     "primaryType": "ChatMessage", "message": {...}}]
// and prints a JSON array of 65-byte hex signatures, in order.
import { privateKeyToAccount } from "viem/accounts";

const types = {
  ChatMessage: [
    { name: "author", type: "address" },
    { name: "conversationId", type: "string" },
    { name: "content", type: "string" },
    { name: "mentions", type: "string[]" },
    { name: "replyTo", type: "string" },
    { name: "timestamp", type: "uint64" },
  ],
  Feedback: [
    { name: "account", type: "address" },
    { name: "conversationId", type: "string" },
    { name: "messageId", type: "string" },
    { name: "rating", type: "uint8" },
    { name: "comment", type: "string" },
    { name: "timestamp", type: "uint64" },
  ],
  SessionGrant: [
    { name: "wallet", type: "address" },
    { name: "sessionKey", type: "address" },
    { name: "scopes", type: "string[]" },
    { name: "expiresAt", type: "uint64" },
    { name: "timestamp", type: "uint64" },
  ],
  SessionRevoke: [
    { name: "wallet", type: "address" },
    { name: "sessionKey", type: "address" },
    { name: "timestamp", type: "uint64" },
  ],
};

let input = "";
for await (const chunk of process.stdin) input += chunk;
const out = [];
for (const request of JSON.parse(input)) {
  const account = privateKeyToAccount(request.key);
  const primaryType = request.primaryType;
  out.push(
    await account.signTypedData({
      domain: {
        name: "Chorus",
        version: "1",
        chainId: request.chainId,
        verifyingContract: request.verifyingContract,
      },
      types: { [primaryType]: types[primaryType] },
      primaryType,
      message: request.message,
    }),
  );
}
process.stdout.write(JSON.stringify(out));
