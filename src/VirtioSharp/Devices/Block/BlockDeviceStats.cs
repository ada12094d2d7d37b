namespace VirtioSharp.Devices.Block;

/// <summary>virtio-blk counters.</summary>
public sealed class BlockDeviceStats
{
#pragma warning disable CS1591 // counters named for what they count
    public long Reads, Writes, Flushes, Discards, WriteZeroes, BytesRead, BytesWritten;
    public long Errors, OutOfRange, ReadOnlyRejects, Unsupported, Malformed;
    /// <summary>Requests not aligned to blk_size (refused with IOERR).</summary>
    public long Misaligned;
    /// <summary>Requests that went through the device's own buffer instead of straight to guest memory.</summary>
    public long Copied;
#pragma warning restore CS1591
    /// <summary>Used elements written: one per request, or one per batch with IN_ORDER.</summary>
    public long UsedElements;

    internal static BlockDeviceStats Sum(BlockDeviceStats[] parts, long usedElements)
    {
        var t = new BlockDeviceStats { UsedElements = usedElements };
        foreach (var p in parts)
        {
            t.Reads += p.Reads; t.Writes += p.Writes; t.Flushes += p.Flushes; t.Discards += p.Discards;
            t.WriteZeroes += p.WriteZeroes; t.BytesRead += p.BytesRead; t.BytesWritten += p.BytesWritten;
            t.Errors += p.Errors; t.OutOfRange += p.OutOfRange; t.ReadOnlyRejects += p.ReadOnlyRejects;
            t.Unsupported += p.Unsupported; t.Malformed += p.Malformed;
            t.Misaligned += p.Misaligned; t.Copied += p.Copied;
        }
        return t;
    }
}
