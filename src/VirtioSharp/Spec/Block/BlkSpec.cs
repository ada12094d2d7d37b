// The wire format lives under Spec/ (shared by the device and the driver); the namespace stays
// VirtioSharp.Devices.Block so the public type names do not change.
namespace VirtioSharp.Devices.Block;

/// <summary>virtio-blk constants and the config layout (§5.2.4).</summary>
internal static class BlkSpec
{
    public const int SectorSize = 512;
    public const int SectorShift = 9;
    public const int HeaderSize = 16;
    public const int DiscardSegmentSize = 16;
    public const int IdBytes = 20;
    public const int ConfigSize = 60;
    public const uint WriteZeroesFlagUnmap = 1;

    // Config offsets.
    public const int Capacity = 0, SizeMax = 8, SegMax = 12, BlkSize = 20, Writeback = 32, NumQueues = 34;
    /// <summary>Topology (VIRTIO_BLK_F_TOPOLOGY): log2 of physical blocks per logical block, then min/opt I/O in logical blocks.</summary>
    public const int PhysicalBlockExp = 24, AlignmentOffset = 25, MinIoSize = 26, OptIoSize = 28;
    public const int MaxDiscardSectors = 36, MaxDiscardSeg = 40, DiscardSectorAlignment = 44;
    public const int MaxWriteZeroesSectors = 48, MaxWriteZeroesSeg = 52, WriteZeroesMayUnmap = 56;
}
