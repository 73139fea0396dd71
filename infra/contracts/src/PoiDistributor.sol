// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/// @title PoiDistributor
/// @notice Pays Proof of Intelligence rewards. For each epoch a checkpointer posts the root of an
/// OpenZeppelin StandardMerkleTree over `[address account, uint256 cumulativeAmount]` leaves, where
/// `cumulativeAmount` is everything the account has earned up to and including that epoch.
///
/// Brakes (issue 18), in the pattern of Morpho's Universal Rewards Distributor and Merkl:
/// - a posted root is *pending*: it becomes claimable only `challengeWindow` seconds after it was
///   posted, and until then a guardian may revoke it (and every later pending root, which builds on
///   it); the revoked epoch is then the next one to post, so it can be posted again correctly;
/// - epochs are posted in sequence from `firstEpoch`, each exactly the next: no value can block the
///   future;
/// - an epoch's `cumulativeTotal` may not exceed `epochBudget` times the epochs through it, nor go
///   down; claims never pay beyond the cumulative total of the epoch claimed against (so never
///   beyond the budgets of the accepted epochs) nor beyond the contract's balance;
/// - a guardian may pause claims; only the admin unpauses;
/// - the admin role moves by OpenZeppelin's AccessControlDefaultAdminRules (two steps, with a delay).
contract PoiDistributor is AccessControlDefaultAdminRules, Pausable {
    using SafeERC20 for IERC20;

    bytes32 public constant CHECKPOINTER_ROLE = keccak256("CHECKPOINTER_ROLE");
    bytes32 public constant GUARDIAN_ROLE = keccak256("GUARDIAN_ROLE");

    enum Status {
        None,
        Pending,
        Revoked
    }

    struct Checkpoint {
        bytes32 root;
        bytes32 manifestHash;
        uint256 cumulativeTotal;
        uint64 postedAt;
        Status status;
    }

    event Checkpointed(
        uint64 indexed epoch, bytes32 root, bytes32 manifestHash, uint256 cumulativeTotal, address indexed checkpointer
    );
    event RootRevoked(uint64 indexed epoch, bytes32 root, address indexed guardian);
    event Claimed(address indexed account, uint64 indexed epoch, uint256 amount, uint256 cumulativeAmount);

    error NotNextEpoch(uint64 epoch, uint64 expected);
    error ZeroRoot();
    error OverBudget(uint256 cumulativeTotal, uint256 budget);
    error TotalDecreases(uint256 cumulativeTotal, uint256 previous);
    error UnknownEpoch(uint64 epoch);
    error NotClaimableYet(uint64 epoch, uint64 claimableAt);
    error NotRevocable(uint64 epoch);
    error InvalidProof();
    error NothingToClaim(address account);
    error ClaimsOverTotal(uint256 claimed, uint256 cumulativeTotal);

    IERC20 public immutable token;
    /// @notice Seconds between a root's posting and its first claim, in which a guardian may revoke it.
    uint64 public immutable challengeWindow;
    /// @notice The most one epoch may add to the cumulative total, in token wei.
    uint256 public immutable epochBudget;
    /// @notice The first epoch this distributor pays.
    uint64 public immutable firstEpoch;

    /// @notice The epoch that may be posted next.
    uint64 public nextEpoch;
    /// @notice Total paid out so far, to every account.
    uint256 public totalClaimed;

    mapping(uint64 epoch => Checkpoint) private _checkpoints;
    /// @notice Total amount paid out to each account so far.
    mapping(address account => uint256 amount) public claimed;

    constructor(
        IERC20 token_,
        address admin,
        address checkpointer,
        address guardian,
        uint64 challengeWindow_,
        uint256 epochBudget_,
        uint64 firstEpoch_,
        uint48 adminDelay
    ) AccessControlDefaultAdminRules(adminDelay, admin) {
        token = token_;
        challengeWindow = challengeWindow_;
        epochBudget = epochBudget_;
        firstEpoch = firstEpoch_;
        nextEpoch = firstEpoch_;
        _grantRole(CHECKPOINTER_ROLE, checkpointer);
        _grantRole(GUARDIAN_ROLE, guardian);
    }

    /// @notice Posts the Merkle root for `epoch`, which must be `nextEpoch`; it is pending for
    /// `challengeWindow` seconds. `cumulativeTotal` is the sum of all cumulative amounts in the tree.
    function checkpoint(uint64 epoch, bytes32 root, bytes32 manifestHash, uint256 cumulativeTotal)
        external
        onlyRole(CHECKPOINTER_ROLE)
    {
        if (root == bytes32(0)) revert ZeroRoot();
        if (epoch != nextEpoch) revert NotNextEpoch(epoch, nextEpoch);
        uint256 budget = epochBudget * (uint256(epoch - firstEpoch) + 1);
        if (cumulativeTotal > budget) revert OverBudget(cumulativeTotal, budget);
        if (epoch > firstEpoch) {
            uint256 previous = _checkpoints[epoch - 1].cumulativeTotal;
            if (cumulativeTotal < previous) revert TotalDecreases(cumulativeTotal, previous);
        }
        _checkpoints[epoch] = Checkpoint({
            root: root,
            manifestHash: manifestHash,
            cumulativeTotal: cumulativeTotal,
            postedAt: uint64(block.timestamp),
            status: Status.Pending
        });
        nextEpoch = epoch + 1;
        emit Checkpointed(epoch, root, manifestHash, cumulativeTotal, msg.sender);
    }

    /// @notice Revokes the pending root of `epoch` and every later one (they build on it), before
    /// the root becomes claimable. `epoch` is then the next epoch to post. Guardian only.
    function revoke(uint64 epoch) external onlyRole(GUARDIAN_ROLE) {
        Checkpoint storage c = _checkpoints[epoch];
        if (c.status != Status.Pending || block.timestamp >= c.postedAt + challengeWindow) {
            revert NotRevocable(epoch);
        }
        for (uint64 e = epoch; e < nextEpoch; e++) {
            Checkpoint storage later = _checkpoints[e];
            if (later.status == Status.Pending) {
                later.status = Status.Revoked;
                emit RootRevoked(e, later.root, msg.sender);
            }
        }
        nextEpoch = epoch;
    }

    /// @notice Stops claims. Guardian only.
    function pause() external onlyRole(GUARDIAN_ROLE) {
        _pause();
    }

    /// @notice Resumes claims. Admin only.
    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }

    /// @notice The root of `epoch` if it is posted and not revoked, else zero.
    function rootOf(uint64 epoch) external view returns (bytes32) {
        Checkpoint storage c = _checkpoints[epoch];
        return c.status == Status.Pending ? c.root : bytes32(0);
    }

    /// @notice The manifest hash of `epoch`'s root if it is posted and not revoked, else zero.
    function manifestHashOf(uint64 epoch) external view returns (bytes32) {
        Checkpoint storage c = _checkpoints[epoch];
        return c.status == Status.Pending ? c.manifestHash : bytes32(0);
    }

    /// @notice Everything recorded for `epoch`, revoked or not.
    function checkpointOf(uint64 epoch) external view returns (Checkpoint memory) {
        return _checkpoints[epoch];
    }

    /// @notice When `epoch`'s root becomes claimable (0 if it is not posted or revoked).
    function claimableAt(uint64 epoch) public view returns (uint64) {
        Checkpoint storage c = _checkpoints[epoch];
        return c.status == Status.Pending ? c.postedAt + challengeWindow : 0;
    }

    /// @notice Pays `account` its unclaimed rewards, proven against the root of `epoch`, once the
    /// root's challenge window has passed. Leaf: keccak256(bytes.concat(keccak256(abi.encode(account,
    /// cumulativeAmount)))).
    function claim(uint64 epoch, address account, uint256 cumulativeAmount, bytes32[] calldata proof)
        external
        whenNotPaused
    {
        Checkpoint storage c = _checkpoints[epoch];
        if (c.status != Status.Pending) revert UnknownEpoch(epoch);
        uint64 from = c.postedAt + challengeWindow;
        if (block.timestamp < from) revert NotClaimableYet(epoch, from);
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(account, cumulativeAmount))));
        if (!MerkleProof.verifyCalldata(proof, c.root, leaf)) revert InvalidProof();
        uint256 already = claimed[account];
        if (cumulativeAmount <= already) revert NothingToClaim(account);
        uint256 amount = cumulativeAmount - already;
        uint256 total = totalClaimed + amount;
        if (total > c.cumulativeTotal) revert ClaimsOverTotal(total, c.cumulativeTotal);
        claimed[account] = cumulativeAmount;
        totalClaimed = total;
        emit Claimed(account, epoch, amount, cumulativeAmount);
        token.safeTransfer(account, amount);
    }
}
