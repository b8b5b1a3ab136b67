"""The simulated language task suite: scenes, tasks, instructions, paraphrases, held-out compositions.

Plain data only (no simulator import): ``SCENES`` and ``TASKS`` are dicts of frozen dataclasses.

Scenes (Panda arm on a table, object placement random per seed)
- ``cubes``: a red, a green and a blue cube (4 cm). Six tasks differ only by their instruction:
  lift one named cube, or stack one named cube on another.
- ``plates``: a yellow block, a purple can, an orange and a black (square, flat) plate. Place one object
  on one plate.

Held-out tasks (``held_out=True``) are new compositions of words seen in training (a stacking pair and a
placement never demonstrated); they are for zero-shot evaluation and are not collected by
``--tasks all``. Every task also has >= 3 paraphrases that are never used for training.

Success predicates are defined on object poses (``TaskSpec.kind`` says which):
- lift:  the object's centre is >= 4 cm above its resting height;
- stack: the object rests on the target (xy within 2 cm, height one cube higher, touching) and the
  gripper no longer holds it;
- place: the object rests on the target plate (centre >= 1 cm inside its edges, height at the plate's
  top) and the gripper no longer holds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SUITE_ENV_NAME = "MtilTabletop"
"""``env_args['env_name']`` of the suite's environment (pipeline/sim/scene.py registers the class under it)"""
CAMERAS = ("agentview", "robot0_eye_in_hand")
"""the cameras our collection records by default (the policies' cameras)"""
THIRDVIEW = "thirdview"
"""our own camera (scene.py places it): at the table's far left corner, about agentview's distance from the
objects and 45 degrees around from it, for demo clips from a view the policies never see"""
SCENE_CAMERAS = (*CAMERAS, "frontview", "birdview", "sideview", "robot0_robotview", THIRDVIEW)
"""every camera of robosuite's table arena with a Panda, which every suite scene has, and our thirdview"""


@dataclass(frozen=True)
class ObjectSpec:
    """One free object of a scene."""

    name: str  # body name prefix in MuJoCo, e.g. "red_cube"
    shape: str  # "box" or "cylinder"
    size: tuple[float, ...]  # box: half extents (x, y, z); cylinder: (radius, half height)
    rgba: tuple[float, float, float, float]
    graspable: bool = True


@dataclass(frozen=True)
class SceneSpec:
    """A table with objects; every task of a scene runs in the same MuJoCo model."""

    name: str
    objects: tuple[ObjectSpec, ...]
    x_range: tuple[float, float] = (-0.12, 0.12)  # placement region around the table centre (m)
    y_range: tuple[float, float] = (-0.18, 0.18)

    def object(self, name: str) -> ObjectSpec:
        for o in self.objects:
            if o.name == name:
                return o
        raise KeyError(f"scene {self.name!r} has no object {name!r}")


@dataclass(frozen=True)
class TaskSpec:
    """A language task: what to do in which scene, and how it is said."""

    name: str
    scene: str
    kind: str  # "lift", "stack" or "place"
    obj: str  # object acted on
    target: str | None  # object it goes on (stack/place)
    instruction: str  # canonical instruction, used for training
    paraphrases: tuple[str, ...] = field(default_factory=tuple)  # never used for training
    held_out: bool = False  # a composition never demonstrated: zero-shot evaluation only


CUBE = (0.02, 0.02, 0.02)
RED, GREEN, BLUE = (0.85, 0.1, 0.1, 1.0), (0.1, 0.7, 0.15, 1.0), (0.15, 0.25, 0.9, 1.0)

SCENES: dict[str, SceneSpec] = {
    "cubes": SceneSpec("cubes", (
        ObjectSpec("red_cube", "box", CUBE, RED),
        ObjectSpec("green_cube", "box", CUBE, GREEN),
        ObjectSpec("blue_cube", "box", CUBE, BLUE),
    )),
    "plates": SceneSpec("plates", (
        ObjectSpec("yellow_block", "box", CUBE, (0.95, 0.8, 0.1, 1.0)),
        ObjectSpec("purple_can", "cylinder", (0.02, 0.035), (0.55, 0.2, 0.7, 1.0)),
        # square plates: box-on-box and cylinder-on-box contacts rest stably; a can on a cylinder plate
        # was measured to pop off on release now and then (MuJoCo cylinder-cylinder contact)
        ObjectSpec("orange_plate", "box", (0.06, 0.06, 0.006), (1.0, 0.5, 0.1, 1.0), graspable=False),
        ObjectSpec("black_plate", "box", (0.06, 0.06, 0.006), (0.08, 0.08, 0.08, 1.0), graspable=False),
    ), x_range=(-0.14, 0.14), y_range=(-0.24, 0.24)),
}

# Fixed size of the "object" observation: (pos 3 + quat 4) per object, zero-padded to this many objects,
# so every scene's files have the same obs shapes (one file may mix scenes).
MAX_OBJECTS = 4
OBJECT_DIM = 7 * MAX_OBJECTS


def _words(name: str) -> str:
    return name.replace("_", " ")


def _lift(color: str, paraphrases: tuple[str, ...]) -> TaskSpec:
    return TaskSpec(f"lift_{color}", "cubes", "lift", f"{color}_cube", None, f"lift the {color} cube",
                    paraphrases)


def _stack(top: str, bottom: str, paraphrases: tuple[str, ...], held_out: bool = False) -> TaskSpec:
    return TaskSpec(f"stack_{top}_on_{bottom}", "cubes", "stack", f"{top}_cube", f"{bottom}_cube",
                    f"stack the {top} cube on the {bottom} cube", paraphrases, held_out)


def _place(obj: str, plate: str, paraphrases: tuple[str, ...], held_out: bool = False) -> TaskSpec:
    return TaskSpec(f"place_{obj.split('_')[1]}_on_{plate}", "plates", "place", obj, f"{plate}_plate",
                    f"put the {_words(obj)} on the {plate} plate", paraphrases, held_out)


_TASK_LIST = [
    _lift("red", ("pick up the red cube", "raise the red block", "grab the red cube and lift it up")),
    _lift("green", ("pick up the green cube", "raise the green block", "grab the green cube and lift it up")),
    _lift("blue", ("pick up the blue cube", "raise the blue block", "grab the blue cube and lift it up")),
    _stack("red", "green", ("put the red cube on top of the green cube", "place the red block onto the green block",
                            "set the red cube on the green one")),
    _stack("green", "blue", ("put the green cube on top of the blue cube",
                             "place the green block onto the blue block", "set the green cube on the blue one")),
    _stack("blue", "red", ("put the blue cube on top of the red cube", "place the blue block onto the red block",
                           "set the blue cube on the red one")),
    _place("yellow_block", "orange", ("place the yellow block onto the orange plate",
                                     "move the yellow block to the orange plate",
                                     "set the yellow block down on the orange plate")),
    _place("yellow_block", "black", ("place the yellow block onto the black plate",
                                     "move the yellow block to the black plate",
                                     "set the yellow block down on the black plate")),
    _place("purple_can", "orange", ("place the purple can onto the orange plate",
                                   "move the purple can to the orange plate",
                                   "set the purple can down on the orange plate")),
    # held out: compositions of seen words, never demonstrated
    _stack("red", "blue", ("put the red cube on top of the blue cube", "place the red block onto the blue block",
                           "set the red cube on the blue one"), held_out=True),
    _stack("green", "red", ("put the green cube on top of the red cube", "place the green block onto the red block",
                            "set the green cube on the red one"), held_out=True),
    _place("purple_can", "black", ("place the purple can onto the black plate",
                                   "move the purple can to the black plate",
                                   "set the purple can down on the black plate"), held_out=True),
]

TASKS: dict[str, TaskSpec] = {t.name: t for t in _TASK_LIST}


def training_tasks() -> list[str]:
    return [n for n, t in TASKS.items() if not t.held_out]


def held_out_tasks() -> list[str]:
    return [n for n, t in TASKS.items() if t.held_out]


def resolve_tasks(text: str) -> list[str]:
    """``all`` (training tasks), ``held_out``, ``everything`` or comma-separated names -> task names.

    Raises UserError naming the unknown task and listing the known ones.
    """
    from mtil.datasets.errors import UserError

    groups = {"all": training_tasks(), "held_out": held_out_tasks(), "everything": list(TASKS)}
    names: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part in groups:
            names += groups[part]
        elif part in TASKS:
            names.append(part)
        else:
            raise UserError(f"--tasks: unknown task {part!r}; known: all, held_out, everything, "
                            + ", ".join(TASKS))
    names = list(dict.fromkeys(names))  # de-duplicate, keep order
    if not names:
        raise UserError("--tasks: no task given")
    return names


def task_for_instruction(text: str) -> str | None:
    """The task whose canonical instruction or paraphrase is ``text`` (case/space-insensitive)."""
    key = " ".join(text.lower().split())
    for t in TASKS.values():
        if key == t.instruction or key in t.paraphrases:
            return t.name
    return None
