"""`vla dataset export-lerobot | import-lerobot | from-mcap`: move episodes between our format, LeRobot v3 and
recorder MCAPs (docs/data-interop.md)."""

from __future__ import annotations

import argparse
import json

from vla_app.cli import args as a


def configure(p: argparse.ArgumentParser) -> None:
    from vla_app.mcap_episodes import McapEpisodeConfig

    sub = p.add_subparsers(dest="dataset_command", required=True)
    q = sub.add_parser("export-lerobot", formatter_class=a.Formatter,
                       help="dataset folders -> one LeRobotDataset v3 folder (images as PNG: lossless)")
    q.add_argument("dirs", nargs="+", help="dataset folders (vla sim collect, from-mcap, import-lerobot)")
    q.add_argument("--out", required=True, help="the LeRobot folder to write")
    q.add_argument("--robot-type", default="", help="info.json robot_type (default: the episodes' arm)")
    a.overwrite_arg(q, "LeRobot export")
    q.set_defaults(func=export_lerobot)

    q = sub.add_parser("import-lerobot", formatter_class=a.Formatter,
                       help="a LeRobot v3 folder written by export-lerobot -> a dataset folder")
    q.add_argument("dir", help="the LeRobot folder (meta/info.json, data/, meta/episodes/)")
    q.add_argument("--out", required=True, help="the dataset folder to write")
    a.overwrite_arg(q, "LeRobot import")
    q.set_defaults(func=import_lerobot)

    q = sub.add_parser("from-mcap", formatter_class=a.Formatter,
                       help="recorder MCAPs (one per episode) -> a dataset folder for training the verifier and value")
    q.add_argument("mcaps", nargs="+", help="finished .mcap recordings (recover a crashed .part first)")
    q.add_argument("--out", required=True, help="the dataset folder to write")
    for name in ("image_topic", "camera_info_topic", "joint_states_topic", "ee_target_topic", "gripper_topic",
                 "success_topic", "camera", "arm", "task", "variation", "quality"):
        q.add_argument(f"--{name.replace('_', '-')}", default=a.default_of(McapEpisodeConfig, name))
    q.add_argument("--instruction-topics", default=",".join(a.default_of(McapEpisodeConfig, "instruction_topics")),
                   help="comma list; the first recorded one gives the instruction")
    q.add_argument("--success", choices=["true", "false"], default=None,
                   help="every episode's outcome, when the MCAPs have no success topic")
    a.overwrite_arg(q, "dataset converted from MCAP")
    q.set_defaults(func=from_mcap)


def export_lerobot(args: argparse.Namespace) -> int:
    from vla_app.lerobot_io import ExportConfig, export_lerobot

    cfg = ExportConfig(sources=tuple(args.dirs), out=args.out, robot_type=args.robot_type, overwrite=args.overwrite)
    print(json.dumps(export_lerobot(cfg)))
    return 0


def import_lerobot(args: argparse.Namespace) -> int:
    from vla_app.lerobot_io import ImportConfig, import_lerobot

    print(json.dumps(import_lerobot(ImportConfig(source=args.dir, out=args.out, overwrite=args.overwrite))))
    return 0


def from_mcap(args: argparse.Namespace) -> int:
    from vla_app.mcap_episodes import McapEpisodeConfig, mcaps_to_dataset

    cfg = McapEpisodeConfig(
        image_topic=args.image_topic, camera_info_topic=args.camera_info_topic,
        joint_states_topic=args.joint_states_topic, ee_target_topic=args.ee_target_topic,
        gripper_topic=args.gripper_topic, success_topic=args.success_topic, camera=args.camera, arm=args.arm,
        task=args.task, variation=args.variation, quality=args.quality,
        instruction_topics=tuple(t.strip() for t in args.instruction_topics.split(",") if t.strip()),
        success=None if args.success is None else args.success == "true")
    print(json.dumps(mcaps_to_dataset(args.mcaps, args.out, cfg, overwrite=args.overwrite)))
    return 0
