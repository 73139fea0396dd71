// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Capped} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Capped.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title ChorusToken (CHR)
/// @notice The Chorus ERC-20: 18 decimals, supply created only by the owner through `mint`, never
/// beyond `cap()` (fixed at deployment), so a compromised owner key cannot print rewards without
/// bound. Used for provider stakes (ProviderRegistry), standing bonds (StandingBond) and proof of
/// intelligence rewards (PoiDistributor).
contract ChorusToken is ERC20Capped, Ownable {
    constructor(address initialOwner, uint256 cap_)
        ERC20("Chorus", "CHR")
        ERC20Capped(cap_)
        Ownable(initialOwner)
    {}

    /// @notice Creates `amount` tokens for `to`. Owner only; reverts beyond the cap.
    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }
}
