// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title AgentRegistry
/// @notice Maps an agent id to the developer address that registered it. The metadata URI is not
/// stored on chain; it is carried by the events, which the indexer reads.
contract AgentRegistry {
    event AgentRegistered(bytes32 indexed agentId, address indexed developer, string metadataUri);
    event AgentUpdated(bytes32 indexed agentId, string metadataUri);
    event AgentDeregistered(bytes32 indexed agentId, address indexed developer);

    error AgentExists(bytes32 agentId);
    error LengthMismatch();
    error NotDeveloper(bytes32 agentId);

    mapping(bytes32 agentId => address developer) private _developers;

    /// @notice Registers `agentId` with the caller as its developer.
    function register(bytes32 agentId, string calldata metadataUri) external {
        _register(agentId, metadataUri);
    }

    /// @notice Registers several agents in one transaction; all or nothing.
    function registerBatch(bytes32[] calldata agentIds, string[] calldata metadataUris) external {
        if (agentIds.length != metadataUris.length) revert LengthMismatch();
        for (uint256 i = 0; i < agentIds.length; ++i) {
            _register(agentIds[i], metadataUris[i]);
        }
    }

    /// @notice Replaces the metadata URI of `agentId`. Developer only.
    function update(bytes32 agentId, string calldata metadataUri) external {
        if (_developers[agentId] != msg.sender) revert NotDeveloper(agentId);
        emit AgentUpdated(agentId, metadataUri);
    }

    /// @notice Removes `agentId`; the id may be registered again afterwards. Developer only.
    function deregister(bytes32 agentId) external {
        if (_developers[agentId] != msg.sender) revert NotDeveloper(agentId);
        delete _developers[agentId];
        emit AgentDeregistered(agentId, msg.sender);
    }

    /// @notice The developer of `agentId`, or the zero address if it is not registered.
    function developerOf(bytes32 agentId) external view returns (address) {
        return _developers[agentId];
    }

    function _register(bytes32 agentId, string calldata metadataUri) private {
        if (_developers[agentId] != address(0)) revert AgentExists(agentId);
        _developers[agentId] = msg.sender;
        emit AgentRegistered(agentId, msg.sender, metadataUri);
    }
}
