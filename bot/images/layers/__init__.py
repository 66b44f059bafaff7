"""Image layers read as they stream in, and stacked into the image's filesystem.

Four modules, each one concern, bottom first (each imports only those above it here):

* `tar`: the incremental tar parser and what it keeps of a layer (`LayerRecord`: entries,
  whiteouts, wanted content, executable heads, under caps), and the `Capture` / `Want`
  vocabulary a policy answers it with;
* `capture`: the policies, what to keep: `DEFAULT_WANT` for the checks, `INVENTORY_WANT` for
  the package inventory, with its reducers and the Go build-info scanner;
* `reader`: `LayerReader`, fed a layer blob's raw bytes in any chunks: compression sniffed
  from the first bytes (gzip, zstd, plain), decompressed in bounded steps, handed to the parser;
* `filesystem`: `merge` stacks an image's layer records into a `Filesystem` (final view and
  history, symlinks resolved as the kernel does), and `os_release` names its distribution.

Every public name is re-exported here: import them from `bot.images.layers`.
"""

from bot.images.layers.capture import (
    APK_DB_MAX,
    DEFAULT_WANT,
    DPKG_STATUS_D_MAX,
    DPKG_STATUS_MAX,
    GO_BUILDINFO_MAGIC,
    GO_INFO_MAX,
    GO_MIN_SIZE,
    INVENTORY_MAX_TOTAL,
    INVENTORY_WANT,
    JAR_MAX,
    METADATA_MAX,
    RPMDB_MAX,
    RPMDB_PATHS,
    GoBuildInfoScanner,
    default_want,
    go_binary_place,
    go_build_info,
    inventory_want,
    jar_path,
    node_package_path,
    pom_properties,
    python_metadata_path,
    reduce_jar,
    reduce_package_json,
    reduce_python_metadata,
)
from bot.images.layers.filesystem import (
    Filesystem,
    Removal,
    Version,
    merge,
    os_release,
    parse_os_release,
)
from bot.images.layers.reader import (
    DEFAULT_MAX_SIZE,
    LayerReader,
    is_layer_media_type,
    read_layer,
)
from bot.images.layers.tar import (
    DEFAULT_HEAD_SIZE,
    DEFAULT_MAX_ENTRIES,
    DEFAULT_MAX_FILE,
    DEFAULT_MAX_HEADS,
    DEFAULT_MAX_PATH_BYTES,
    DEFAULT_MAX_TOTAL,
    ENTRY_OVERHEAD,
    PATH_MAX,
    Capture,
    Entry,
    EntryType,
    GiB,
    KiB,
    LayerError,
    LayerRecord,
    MiB,
    Scanner,
    Want,
    Whiteout,
    normalise_path,
)

__all__ = [
    "APK_DB_MAX",
    "DEFAULT_HEAD_SIZE",
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_MAX_FILE",
    "DEFAULT_MAX_HEADS",
    "DEFAULT_MAX_PATH_BYTES",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_MAX_TOTAL",
    "DEFAULT_WANT",
    "DPKG_STATUS_D_MAX",
    "DPKG_STATUS_MAX",
    "ENTRY_OVERHEAD",
    "GO_BUILDINFO_MAGIC",
    "GO_INFO_MAX",
    "GO_MIN_SIZE",
    "INVENTORY_MAX_TOTAL",
    "INVENTORY_WANT",
    "JAR_MAX",
    "METADATA_MAX",
    "PATH_MAX",
    "RPMDB_MAX",
    "RPMDB_PATHS",
    "Capture",
    "Entry",
    "EntryType",
    "Filesystem",
    "GiB",
    "GoBuildInfoScanner",
    "KiB",
    "LayerError",
    "LayerReader",
    "LayerRecord",
    "MiB",
    "Removal",
    "Scanner",
    "Version",
    "Want",
    "Whiteout",
    "default_want",
    "go_binary_place",
    "go_build_info",
    "inventory_want",
    "is_layer_media_type",
    "jar_path",
    "merge",
    "node_package_path",
    "normalise_path",
    "os_release",
    "parse_os_release",
    "pom_properties",
    "python_metadata_path",
    "read_layer",
    "reduce_jar",
    "reduce_package_json",
    "reduce_python_metadata",
]
