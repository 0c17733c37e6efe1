// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

// A minimal pausable contract for the smart-contract emergency tests: only the pauser,
// set at deployment, can call pause(), and only once.
contract Pausable {
    address public pauser;
    bool public paused;

    event Paused(address account);

    constructor(address initialPauser) {
        pauser = initialPauser;
    }

    function pause() external {
        require(msg.sender == pauser, "caller is not the pauser");
        require(!paused, "already paused");
        paused = true;
        emit Paused(msg.sender);
    }
}
