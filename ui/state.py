"""Every session-state key of the app, named once."""

from __future__ import annotations

# The model picker (sidebar).
INITIALISED = "picker.initialised"
URL_WARNINGS = "picker.url_warnings"
SELECTION = "picker.selection"  # what every page shows this run
URL_SELECTION = "picker.url_selection"  # what the link asked for: its warnings stand until the model changes
LAST_GOOD = "picker.last_good"  # the last valid Selection; shown whenever the controls hold a bad one
FAMILY = "picker.family"
PRESET = "picker.preset"
SQUARE = "picker.square"
CHANNELS = "picker.channels"
SIDE = "picker.side"
HEIGHT = "picker.height"
WIDTH = "picker.width"
BATCH = "picker.batch"

# Custom model controls: each field's own key is `custom.<field>` (server/fields.py, `Field.key`).
C_BLOCK_PER_STAGE = "custom.block_per_stage"
C_NOTES = "custom.notes"  # {field: what the app changed in it to follow another control}, said once

# The architecture page.
TABLE_LEVEL = "arch.table_level"
TABLE_STAGE = "arch.table_stage"
ARCH_TAB = "arch.tab"  # the open tab: only its content is drawn
DIAGRAM_EXPANDED = "arch.diagram_expanded"  # suffixed with the model, so each model starts with its default

# The feature-maps page.
FM_SOURCE = "fm.source"
FM_SAMPLE = "fm.sample"
FM_SHAPE = "fm.shape"  # the sample list of a model trained on the built-in shapes: shapes, then photos
FM_PATTERN = "fm.pattern"
FM_UPLOAD = "fm.upload"
FM_UPLOAD_SEEN = "fm.upload_seen"  # file_id of the last upload handled, so a bad file is reported once
FM_IMAGE = "fm.image"  # the image on screen: (id, label, LoadedImage); a failed load leaves it as it was
FM_WEIGHTS = "fm.weights"
FM_MODEL = "fm.model"  # this session's own model object (hooks never touch a shared one)
FM_CAPTURE = "fm.capture"  # (key, input tensor, Capture) of the image on screen
FM_LAYER = "fm.layer"
FM_INSIDE = "fm.inside"
FM_SORT = "fm.sort"
FM_SCALE = "fm.scale"
FM_TILES = "fm.tiles"
FM_CAM_CLASS = "fm.cam_class"
FM_CAM_STAGE = "fm.cam_stage"

# The training page.
OWNER = "session.owner"  # this browser session's id, under which its jobs are filed in the shared runner
TRAIN_DATA = "train.data"
TRAIN_EPOCHS = "train.epochs"
TRAIN_BATCH = "train.batch"
TRAIN_LR = "train.lr"
TRAIN_SEED = "train.seed"
TRAIN_SECONDS = "train.seconds"
TRAIN_JOBS = "train.jobs"  # this session's runs, oldest first: list of Run
TRAIN_ERROR = "train.error"
TRAIN_CURVES = "train.curves"  # (what the live figure shows, the figure): redrawn only when that changes
TRAIN_SHOWN = "train.shown"  # the id of the latest finished run whose result a whole-page run has shown
TRAINED = "train.trained"  # the latest trained model, offered to the feature-maps page

# The residual lab.
LAB_DEPTH = "lab.depth"
LAB_BN = "lab.bn"
LAB_WIDTH = "lab.width"
LAB_SHALLOW = "lab.shallow"
LAB_DATA = "lab.data"
LAB_EPOCHS = "lab.epochs"
LAB_SECONDS = "lab.seconds"
LAB_RACES = "lab.races"  # this session's races: list of (run id, job id or None once only its record is left)
LAB_ERROR = "lab.error"
LAB_SHOWN = "lab.shown"  # the id of the latest finished race whose end a whole-page run has shown
LAB_ANALYSES = "lab.analyses"  # {(race run id, depth, analysis): its job id}
LAB_ANALYSIS_SHOWN = "lab.analysis_shown"  # suffixed with the analysis: the id of its job a whole-page run showed
LAB_PAIR = "lab.pair"  # the depth whose twins the analyses measure

# The compare page.
CMP_INITIALISED = "cmp.initialised"  # model B has been read from the link
CMP_URL_WARNINGS = "cmp.url_warnings"  # what had to be replaced in the link's model B
CMP_B_MODEL = "cmp.b_model"  # the "Model B" selectbox: a preset name or "custom"
CMP_B_FIELD = "cmp.b"  # each custom field's control is f"{CMP_B_FIELD}.{field name}"
CMP_B_LAST_GOOD = "cmp.b_last_good"  # model B's last valid config: shown while the controls hold a bad one
CMP_TAB = "cmp.tab"  # the open tab: only its content is drawn
CMP_BLOCK = "cmp.block"  # the block drawn layer by layer
CMP_ONLY_DIFFERING = "cmp.only_differing"
