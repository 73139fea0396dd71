// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title LogFixture
/// @notice Test helper: emits many logs cheaply, for exercising log ingestion. Not for deployment
/// outside local chains.
contract LogFixture {
    event Transfer(address indexed from, address indexed to, uint256 value);

    error TooManyTopics(uint256 count);

    /// @notice Emits `n` Transfer events: from = msg.sender, to = address(i + 1), value = i.
    function emitTransfers(uint256 n) external {
        for (uint256 i = 0; i < n; ++i) {
            emit Transfer(msg.sender, address(uint160(i + 1)), i);
        }
    }

    /// @notice Emits one raw log with `topics` (0 to 4 of them) and `data`.
    function emitRaw(bytes32[] calldata topics, bytes calldata data) external {
        uint256 count = topics.length;
        if (count > 4) revert TooManyTopics(count);
        bytes memory buf = data;
        assembly ("memory-safe") {
            let ptr := add(buf, 0x20)
            let len := mload(buf)
            let t := topics.offset
            switch count
            case 0 { log0(ptr, len) }
            case 1 { log1(ptr, len, calldataload(t)) }
            case 2 { log2(ptr, len, calldataload(t), calldataload(add(t, 0x20))) }
            case 3 { log3(ptr, len, calldataload(t), calldataload(add(t, 0x20)), calldataload(add(t, 0x40))) }
            default {
                log4(
                    ptr,
                    len,
                    calldataload(t),
                    calldataload(add(t, 0x20)),
                    calldataload(add(t, 0x40)),
                    calldataload(add(t, 0x60))
                )
            }
        }
    }
}
