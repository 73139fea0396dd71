// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title ChorusToken (CHR)
/// @notice The Chorus ERC-20: 18 decimals, supply created only by the owner through `mint`.
/// Used for provider stakes (ProviderRegistry) and proof-of-inference rewards (PoiDistributor).
contract ChorusToken is ERC20, Ownable {
    constructor(address initialOwner) ERC20("Chorus", "CHR") Ownable(initialOwner) {}

    /// @notice Creates `amount` tokens for `to`. Owner only.
    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }
}
