"""The 50 Meta-World tasks (MT50) as language tasks: plain data, importable without Meta-World.

Each task's instruction is the benchmark's one-sentence description (the Meta-World paper's task list, the
strings LeRobot's Meta-World datasets carry as their task), lower-cased. push-v3 and push-back-v3 share one
there ("push the puck to a goal"): in push-back the puck starts beyond the goal and is pushed back towards
the robot, so push-back's instruction says so; the shared sentence is kept as its ``alias`` (how a LeRobot
dataset names it) but names push-v3 when looked up, since words alone cannot tell the two apart. The three
paraphrases of each are ours, held out from training.

Difficulty groups are the ones the field reports Meta-World success by (easy / medium / hard / very hard,
as LeRobot groups MT50); MT10 is the benchmark's own 10-task subset (``metaworld.env_dict.MT10_V3``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetaWorldTask:
    name: str
    instruction: str
    paraphrases: tuple[str, ...]
    difficulty: str
    alias: str = ""
    """another wording data may carry for this task (LeRobot's shared sentence), accepted at ingest"""


_ROWS = [  # name, instruction, paraphrases, difficulty
    ("assembly-v3", "pick up a nut and place it onto a peg",
     ("grab the nut and put it on the peg", "lift the ring nut and drop it over the peg",
      "take the nut and fit it onto the peg"), "hard"),
    ("basketball-v3", "dunk the basketball into the basket",
     ("put the ball through the hoop", "pick up the ball and dunk it", "score the ball in the basket"), "medium"),
    ("bin-picking-v3", "grasp the puck from one bin and place it into another bin",
     ("move the puck from the first bin to the other one", "pick the puck out of its bin and drop it in the other",
      "transfer the puck between the two bins"), "medium"),
    ("box-close-v3", "grasp the cover and close the box with it",
     ("put the lid on the box", "pick up the lid and close the box", "cover the box with its lid"), "medium"),
    ("button-press-topdown-v3", "press a button from the top",
     ("push the button down from above", "press down on the button", "hit the button from above"), "easy"),
    ("button-press-topdown-wall-v3", "bypass a wall and press a button from the top",
     ("reach over the wall and press the button down", "press the button from above behind the wall",
      "get around the wall and push the button down"), "easy"),
    ("button-press-v3", "press a button",
     ("push the button", "press the button in front of you", "push the button forward"), "easy"),
    ("button-press-wall-v3", "bypass a wall and press a button",
     ("go around the wall and push the button", "press the button behind the wall",
      "reach past the wall to press the button"), "easy"),
    ("coffee-button-v3", "push a button on the coffee machine",
     ("press the coffee machine's button", "hit the button of the coffee maker",
      "switch on the coffee machine with its button"), "easy"),
    ("coffee-pull-v3", "pull a mug from a coffee machine",
     ("take the mug out from under the coffee machine", "drag the cup away from the coffee maker",
      "pull the mug out of the coffee machine"), "medium"),
    ("coffee-push-v3", "push a mug under a coffee machine",
     ("slide the mug under the coffee maker", "move the cup beneath the coffee machine",
      "push the cup into the coffee machine"), "medium"),
    ("dial-turn-v3", "rotate a dial 180 degrees",
     ("turn the dial half a turn", "spin the knob around by half", "twist the dial by 180 degrees"), "easy"),
    ("disassemble-v3", "pick a nut out of a peg",
     ("take the nut off the peg", "lift the nut off its peg", "remove the ring nut from the peg"), "very_hard"),
    ("door-close-v3", "close a door with a revolving joint",
     ("shut the door", "swing the door closed", "push the open door shut"), "easy"),
    ("door-lock-v3", "lock the door by rotating the lock clockwise",
     ("turn the lock clockwise to lock the door", "lock the door", "twist the door lock closed"), "easy"),
    ("door-open-v3", "open a door with a revolving joint",
     ("swing the door open", "pull the door open by its handle", "open the door"), "easy"),
    ("door-unlock-v3", "unlock the door by rotating the lock counter-clockwise",
     ("turn the lock counter-clockwise to unlock the door", "unlock the door", "twist the door lock open"),
     "easy"),
    ("drawer-close-v3", "push and close a drawer",
     ("shut the drawer", "push the drawer closed", "slide the drawer back in"), "easy"),
    ("drawer-open-v3", "open a drawer",
     ("pull the drawer open", "slide the drawer out", "pull out the drawer"), "easy"),
    ("faucet-close-v3", "rotate the faucet clockwise",
     ("turn the faucet off clockwise", "twist the tap clockwise", "close the faucet"), "easy"),
    ("faucet-open-v3", "rotate the faucet counter-clockwise",
     ("turn the faucet on counter-clockwise", "twist the tap counter-clockwise", "open the faucet"), "easy"),
    ("hammer-v3", "hammer a screw on the wall",
     ("pick up the hammer and drive the nail in", "hit the nail into the wall with the hammer",
      "use the hammer on the nail"), "medium"),
    ("hand-insert-v3", "insert the gripper into a hole",
     ("put the gripper into the hole", "reach down into the hole", "push the hand into the hole"), "hard"),
    ("handle-press-side-v3", "press a handle down sideways",
     ("push the side handle down", "press the handle down from the side", "lower the handle from the side"),
     "easy"),
    ("handle-press-v3", "press a handle down",
     ("push the handle down", "press down on the handle", "lower the handle"), "easy"),
    ("handle-pull-side-v3", "pull a handle up sideways",
     ("lift the side handle up", "pull the handle up from the side", "raise the handle from the side"), "easy"),
    ("handle-pull-v3", "pull a handle up",
     ("lift the handle up", "pull up on the handle", "raise the handle"), "easy"),
    ("lever-pull-v3", "pull a lever down 90 degrees",
     ("pull the lever down", "swing the lever down a quarter turn", "lower the lever by 90 degrees"), "easy"),
    ("peg-insert-side-v3", "insert a peg sideways",
     ("push the peg into the hole from the side", "slide the peg sideways into its hole",
      "put the peg in the side hole"), "medium"),
    ("peg-unplug-side-v3", "unplug a peg sideways",
     ("pull the peg out sideways", "take the peg out of the side hole", "unplug the peg from the side"), "easy"),
    ("pick-out-of-hole-v3", "pick up a puck from a hole",
     ("lift the puck out of the hole", "take the puck out of its hole", "grab the puck in the hole and lift it"),
     "hard"),
    ("pick-place-v3", "pick and place a puck to a goal",
     ("pick up the puck and put it at the goal", "move the puck to the goal through the air",
      "grasp the puck and place it on the target"), "hard"),
    ("pick-place-wall-v3", "pick a puck, bypass a wall and place the puck",
     ("lift the puck over the wall and place it at the goal", "carry the puck around the wall to the goal",
      "pick up the puck and put it behind the wall"), "very_hard"),
    ("plate-slide-back-side-v3", "get a plate from the cabinet sideways",
     ("slide the plate out of the cabinet sideways", "pull the plate out of the cabinet from the side",
      "take the plate out of the cabinet to the side"), "easy"),
    ("plate-slide-back-v3", "get a plate from the cabinet",
     ("slide the plate out of the cabinet", "pull the plate back out of the cabinet",
      "take the plate out of the cabinet"), "easy"),
    ("plate-slide-side-v3", "slide a plate into a cabinet sideways",
     ("push the plate into the cabinet from the side", "slide the plate sideways into the cabinet",
      "move the plate into the cabinet from the side"), "easy"),
    ("plate-slide-v3", "slide a plate into a cabinet",
     ("push the plate into the cabinet", "slide the plate into the cabinet", "move the plate into the cabinet"),
     "easy"),
    ("push-back-v3", "push the puck back towards you to a goal",
     ("slide the puck back to the goal", "push the puck back to the target", "bring the puck back to the goal"),
     "hard"),
    ("push-v3", "push the puck to a goal",
     ("slide the puck to the goal", "push the puck onto the target", "move the puck to the goal along the table"),
     "hard"),
    ("push-wall-v3", "bypass a wall and push a puck to a goal",
     ("push the puck around the wall to the goal", "slide the puck past the wall to the target",
      "get the puck around the wall onto the goal"), "medium"),
    ("reach-v3", "reach a goal position",
     ("move the gripper to the goal", "reach the target position", "put the hand at the goal"), "easy"),
    ("reach-wall-v3", "bypass a wall and reach a goal",
     ("reach over the wall to the goal", "get the gripper past the wall to the target",
      "move the hand around the wall to the goal"), "easy"),
    ("shelf-place-v3", "pick and place a puck onto a shelf",
     ("put the puck on the shelf", "lift the puck onto the shelf", "place the puck on the shelf"), "very_hard"),
    ("soccer-v3", "kick a soccer into the goal",
     ("push the ball into the goal", "score the soccer ball", "get the ball into the net"), "medium"),
    ("stick-pull-v3", "grasp a stick and pull a box with the stick",
     ("use the stick to pull the box", "pick up the stick and drag the box with it",
      "pull the box towards you with the stick"), "very_hard"),
    ("stick-push-v3", "grasp a stick and push a box using the stick",
     ("use the stick to push the box", "pick up the stick and push the box with it",
      "push the box away with the stick"), "very_hard"),
    ("sweep-into-v3", "sweep a puck into a hole",
     ("push the puck into the hole", "slide the puck into the hole", "sweep the puck into the hole"), "medium"),
    ("sweep-v3", "sweep a puck off the table",
     ("push the puck off the table", "slide the puck off the edge", "sweep the puck off the edge of the table"),
     "medium"),
    ("window-close-v3", "push and close a window",
     ("slide the window shut", "close the window", "push the window closed"), "easy"),
    ("window-open-v3", "push and open a window",
     ("slide the window open", "open the window", "push the window open"), "easy"),
]

TASKS: dict[str, MetaWorldTask] = {
    name: MetaWorldTask(name, text, para, level, alias="push the puck to a goal" if name == "push-back-v3" else "")
    for name, text, para, level in _ROWS
}

MT10 = ("reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3", "drawer-close-v3",
        "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "window-close-v3")
"""The benchmark's MT10, in its own order."""

DIFFICULTIES = ("easy", "medium", "hard", "very_hard")

SETS: dict[str, tuple[str, ...]] = {
    "mt10": MT10,
    "mt50": tuple(TASKS),
    **{level: tuple(n for n, t in TASKS.items() if t.difficulty == level) for level in DIFFICULTIES},
}
"""Named task sets, usable wherever --tasks is: mt10, mt50 and the difficulty groups."""
