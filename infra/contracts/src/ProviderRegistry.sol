// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

/// @title ProviderRegistry
/// @notice Inference providers register an endpoint and stake ChorusToken. A provider's stake is
/// always either 0 or at least `minStake`. The endpoint is not stored on chain; it is carried by
/// the ProviderRegistered event.
contract ProviderRegistry {
    using SafeERC20 for IERC20;

    event ProviderRegistered(bytes32 indexed providerId, address indexed operator, string endpoint, uint256 stake);
    event Staked(bytes32 indexed providerId, address indexed operator, uint256 amount, uint256 totalStake);
    event Unstaked(bytes32 indexed providerId, address indexed operator, uint256 amount, uint256 totalStake);

    error ProviderExists(bytes32 providerId);
    error NotOperator(bytes32 providerId);
    error StakeTooLow(uint256 given, uint256 minimum);
    error InsufficientStake(uint256 requested, uint256 available);
    error ZeroAmount();

    struct Provider {
        address operator;
        uint256 stake;
    }

    IERC20 public immutable token;
    uint256 public immutable minStake;

    mapping(bytes32 providerId => Provider) private _providers;

    constructor(IERC20 token_, uint256 minStake_) {
        token = token_;
        minStake = minStake_;
    }

    /// @notice Registers `providerId` with the caller as operator and pulls `stake` tokens from the
    /// caller (needs a prior `approve`). `stake` must be at least `minStake`.
    function register(bytes32 providerId, string calldata endpoint, uint256 stake_) external {
        Provider storage p = _providers[providerId];
        if (p.operator != address(0)) revert ProviderExists(providerId);
        if (stake_ < minStake) revert StakeTooLow(stake_, minStake);
        p.operator = msg.sender;
        p.stake = stake_;
        emit ProviderRegistered(providerId, msg.sender, endpoint, stake_);
        if (stake_ > 0) token.safeTransferFrom(msg.sender, address(this), stake_);
    }

    /// @notice Adds `amount` to the stake of `providerId`, pulled from the caller. Operator only.
    /// The resulting total must be at least `minStake`.
    function stake(bytes32 providerId, uint256 amount) external {
        Provider storage p = _providers[providerId];
        if (p.operator != msg.sender) revert NotOperator(providerId);
        if (amount == 0) revert ZeroAmount();
        uint256 total = p.stake + amount;
        if (total < minStake) revert StakeTooLow(total, minStake);
        p.stake = total;
        emit Staked(providerId, msg.sender, amount, total);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Withdraws `amount` of the stake of `providerId` to the operator. Operator only.
    /// The remaining stake must be 0 or at least `minStake`.
    function unstake(bytes32 providerId, uint256 amount) external {
        Provider storage p = _providers[providerId];
        if (p.operator != msg.sender) revert NotOperator(providerId);
        if (amount == 0) revert ZeroAmount();
        uint256 current = p.stake;
        if (amount > current) revert InsufficientStake(amount, current);
        uint256 remaining = current - amount;
        if (remaining != 0 && remaining < minStake) revert StakeTooLow(remaining, minStake);
        p.stake = remaining;
        emit Unstaked(providerId, msg.sender, amount, remaining);
        token.safeTransfer(msg.sender, amount);
    }

    /// @notice The operator of `providerId`, or the zero address if it is not registered.
    function operatorOf(bytes32 providerId) external view returns (address) {
        return _providers[providerId].operator;
    }

    /// @notice The current stake of `providerId`.
    function stakeOf(bytes32 providerId) external view returns (uint256) {
        return _providers[providerId].stake;
    }
}
