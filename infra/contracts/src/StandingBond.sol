// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

/// @title StandingBond
/// @notice Users and agent developers bond ChorusToken to have standing in Proof of
/// Intelligence scoring (poi-v3): an account's user and developer units in an epoch are capped
/// in proportion to its bond at the epoch's end, and an account without a bond earns none. A new
/// address therefore earns nothing until someone locks capital in it, and splitting one bond over
/// many addresses buys no more than the bond buys from one. The totals are carried by the events,
/// which the indexer reads.
contract StandingBond {
    using SafeERC20 for IERC20;

    event Bonded(address indexed account, uint256 amount, uint256 totalBond);
    event Unbonded(address indexed account, uint256 amount, uint256 totalBond);

    error ZeroAmount();
    error InsufficientBond(uint256 requested, uint256 available);

    IERC20 public immutable token;

    mapping(address account => uint256 amount) public bondOf;

    constructor(IERC20 token_) {
        token = token_;
    }

    /// @notice Adds `amount` to the caller's bond, pulled from the caller (needs a prior `approve`).
    function bond(uint256 amount) external {
        _bond(msg.sender, amount);
    }

    /// @notice Adds `amount` to `account`'s bond, pulled from the caller: a sponsor (an app, an
    /// employer) bonds for a user, who alone can unbond it, to itself.
    function bondFor(address account, uint256 amount) external {
        _bond(account, amount);
    }

    function _bond(address account, uint256 amount) private {
        if (amount == 0) revert ZeroAmount();
        uint256 total = bondOf[account] + amount;
        bondOf[account] = total;
        emit Bonded(account, amount, total);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Returns `amount` of the caller's bond to the caller.
    function unbond(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        uint256 current = bondOf[msg.sender];
        if (amount > current) revert InsufficientBond(amount, current);
        uint256 total = current - amount;
        bondOf[msg.sender] = total;
        emit Unbonded(msg.sender, amount, total);
        token.safeTransfer(msg.sender, amount);
    }
}
