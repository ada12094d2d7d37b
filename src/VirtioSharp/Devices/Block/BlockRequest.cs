namespace VirtioSharp.Devices.Block;

/// <summary>
/// One request handed to an <see cref="IBlockQueue"/>. The device has already checked the range against the disk and
/// the guest's buffers against its address space; <see cref="Vectors"/> point at host memory that stays valid, and is
/// not touched by the device, until the request's completion has been reaped.
/// </summary>
public readonly unsafe struct BlockRequest
{
    /// <summary>The operation.</summary>
    public BlockOp Op { get; init; }
    /// <summary>Modifiers (FUA, UNMAP).</summary>
    public BlockRequestFlags Flags { get; init; }
    /// <summary>Byte offset on the disk.</summary>
    public ulong Offset { get; init; }
    /// <summary>Bytes: the sum of the vectors for Read/Write, the range for Discard/WriteZeroes, 0 for Flush.</summary>
    public ulong Length { get; init; }
    /// <summary>Read/Write: the host memory, <see cref="VectorCount"/> entries (at most <see cref="IBlockQueue.MaxVectors"/>).</summary>
    public IoVec* Vectors { get; init; }
    /// <summary>Entries in <see cref="Vectors"/>.</summary>
    public int VectorCount { get; init; }
    /// <summary>The device's name for the request, returned unchanged in its <see cref="BlockCompletion"/>.</summary>
    public ulong Tag { get; init; }
}
