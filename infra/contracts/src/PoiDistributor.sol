// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/// @title PoiDistributor
/// @notice Pays proof-of-inference rewards. For each epoch a checkpointer posts the root of an
/// OpenZeppelin StandardMerkleTree over `[address account, uint256 cumulativeAmount]` leaves, where
/// `cumulativeAmount` is everything the account has earned up to and including that epoch. Anyone may
/// then claim for an account against any checkpointed epoch; the account receives the difference
/// between the proven cumulative amount and what it has already claimed. The contract is funded by
/// plain token transfers to its address.
contract PoiDistributor is AccessControl {
    using SafeERC20 for IERC20;

    bytes32 public constant CHECKPOINTER_ROLE = keccak256("CHECKPOINTER_ROLE");

    event Checkpointed(
        uint64 indexed epoch, bytes32 root, bytes32 manifestHash, uint256 cumulativeTotal, address indexed checkpointer
    );
    event Claimed(address indexed account, uint64 indexed epoch, uint256 amount, uint256 cumulativeAmount);

    error EpochAlreadyCheckpointed(uint64 epoch);
    error EpochNotIncreasing(uint64 epoch, uint64 latest);
    error ZeroRoot();
    error UnknownEpoch(uint64 epoch);
    error InvalidProof();
    error NothingToClaim(address account);

    IERC20 public immutable token;

    /// @notice The highest checkpointed epoch; meaningful only when `hasCheckpoint` is true.
    uint64 public latestEpoch;
    /// @notice Whether any epoch has been checkpointed yet.
    bool public hasCheckpoint;

    mapping(uint64 epoch => bytes32 root) public rootOf;
    mapping(uint64 epoch => bytes32 manifestHash) public manifestHashOf;
    /// @notice Total amount paid out to each account so far.
    mapping(address account => uint256 amount) public claimed;

    constructor(IERC20 token_, address admin, address checkpointer) {
        token = token_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(CHECKPOINTER_ROLE, checkpointer);
    }

    /// @notice Posts the Merkle root for `epoch`. Epochs must strictly increase; the first may be any
    /// value, including 0. `cumulativeTotal` is the sum of all cumulative amounts in the tree.
    function checkpoint(uint64 epoch, bytes32 root, bytes32 manifestHash, uint256 cumulativeTotal)
        external
        onlyRole(CHECKPOINTER_ROLE)
    {
        if (root == bytes32(0)) revert ZeroRoot();
        if (rootOf[epoch] != bytes32(0)) revert EpochAlreadyCheckpointed(epoch);
        if (hasCheckpoint && epoch <= latestEpoch) revert EpochNotIncreasing(epoch, latestEpoch);
        rootOf[epoch] = root;
        manifestHashOf[epoch] = manifestHash;
        latestEpoch = epoch;
        hasCheckpoint = true;
        emit Checkpointed(epoch, root, manifestHash, cumulativeTotal, msg.sender);
    }

    /// @notice Pays `account` its unclaimed rewards, proven against the root of `epoch`.
    /// Leaf: keccak256(bytes.concat(keccak256(abi.encode(account, cumulativeAmount)))).
    function claim(uint64 epoch, address account, uint256 cumulativeAmount, bytes32[] calldata proof) external {
        bytes32 root = rootOf[epoch];
        if (root == bytes32(0)) revert UnknownEpoch(epoch);
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(account, cumulativeAmount))));
        if (!MerkleProof.verifyCalldata(proof, root, leaf)) revert InvalidProof();
        uint256 already = claimed[account];
        if (cumulativeAmount <= already) revert NothingToClaim(account);
        uint256 amount = cumulativeAmount - already;
        claimed[account] = cumulativeAmount;
        emit Claimed(account, epoch, amount, cumulativeAmount);
        token.safeTransfer(account, amount);
    }
}
