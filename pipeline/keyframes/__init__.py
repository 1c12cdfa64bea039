"""Keyframe rendering: the engine runs on keyframes only; the frames between are carried from both
neighbouring keyframes along the source's optical flow. plan.py places keyframes and finds scene cuts,
synth.py makes an in-between from its two keyframes, stages.py is the render loop that does both."""

from pipeline.keyframes.plan import KeyframePlan, keyframe_positions, plan_keyframes, shot_boundaries, uses_keyframes

__all__ = ["KeyframePlan", "keyframe_positions", "plan_keyframes", "shot_boundaries", "uses_keyframes"]
