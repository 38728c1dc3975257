"""The command-line entry points (console scripts hypros-pretrain, hypros-finetune, hypros-prepare,
hypros-study, hypros-eval; launch/ and eval/ in a checkout call these)."""
