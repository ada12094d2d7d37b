namespace VirtioSharp.Devices.Block;

/// <summary>What a <see cref="BlockRequest"/> asks the storage to do.</summary>
public enum BlockOp : byte
{
    /// <summary>Read <see cref="BlockRequest.Length"/> bytes at the offset into the request's vectors.</summary>
    Read,
    /// <summary>Write the request's vectors at the offset.</summary>
    Write,
    /// <summary>Make every write completed before it durable (fdatasync, NBD_CMD_FLUSH).</summary>
    Flush,
    /// <summary>Drop the range's data (punch a hole, BLKDISCARD, NBD_CMD_TRIM); it may read back as anything.</summary>
    Discard,
    /// <summary>Make the range read back as zeros; with <see cref="BlockRequestFlags.Unmap"/> it may also deallocate.</summary>
    WriteZeroes,
}
