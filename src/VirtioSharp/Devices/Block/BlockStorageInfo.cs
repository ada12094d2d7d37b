namespace VirtioSharp.Devices.Block;

/// <summary>What a storage is and can do; the device derives its features and config space from it (§5.2.4).</summary>
public sealed record BlockStorageInfo
{
    /// <summary>Capacity in bytes when opened.</summary>
    public required ulong Size { get; init; }
    /// <summary>Writes are refused: the device offers VIRTIO_BLK_F_RO.</summary>
    public bool ReadOnly { get; init; }
    /// <summary>
    /// The smallest unit the storage addresses, 512 or 4096 (O_DIRECT files: the file system's or device's logical
    /// block size). The device reports it as blk_size and refuses requests not aligned to it.
    /// </summary>
    public uint LogicalBlockSize { get; init; } = 512;
    /// <summary>Physical block size in bytes (0: same as logical): the topology's physical_block_exp.</summary>
    public uint PhysicalBlockSize { get; init; }
    /// <summary>Optimal I/O size in bytes (0: unknown): the topology's opt_io_size.</summary>
    public uint OptimalIoSize { get; init; }
    /// <summary>Discard really deallocates (hole punching, BLKDISCARD, NBD TRIM); without it DISCARD is not offered.</summary>
    public bool SupportsDiscard { get; init; }
    /// <summary>WriteZeroes is supported (ZERO_RANGE, NBD WRITE_ZEROES, or written zeros).</summary>
    public bool SupportsWriteZeroes { get; init; }
    /// <summary>WriteZeroes with UNMAP may deallocate (write_zeroes_may_unmap).</summary>
    public bool WriteZeroesMayUnmap { get; init; }
    /// <summary>Discard granularity in bytes (0: the logical block size): discard_sector_alignment.</summary>
    public uint DiscardAlignment { get; init; }
    /// <summary>
    /// Completed writes may sit in a volatile cache until a flush (a page cache, a disk's cache, an NBD server that
    /// advertises FLUSH): the device then offers VIRTIO_BLK_F_FLUSH and a writable CONFIG_WCE.
    /// </summary>
    public bool VolatileCache { get; init; } = true;
    /// <summary>One line for logs: what was opened and how (e.g. "image.raw, O_DIRECT, io_uring").</summary>
    public string Description { get; init; } = "";
}
