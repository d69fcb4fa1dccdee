"""A Kaltura API simulator that the official KalturaApiClient cannot tell from the real service, for the calls
Kaltura Archive makes. See `python -m kaltura_sim --help`, and `Simulator` / `SimState` for the test helpers.

    sim = start_in_thread(entries=2000, seed=1, content_scale=0.001)
    KalturaConfiguration(sim.url); session.start(sim.admin_secret, ..., partnerId=sim.partner_id)
    sim.state.play(entry_id); sim.state.inject_fault("http500"); sim.stop()
"""

from .errors import KalturaError
from .server import Simulator, start_in_thread
from .state import SimState

__all__ = ["KalturaError", "SimState", "Simulator", "start_in_thread"]
