"""rdt_sim: the MuJoCo ALOHA with the real robot's names and units, scripted experts, sim time, evaluation."""
