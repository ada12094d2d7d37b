namespace VirtioSharp.Devices.Block;

/// <summary>Modifiers of a <see cref="BlockRequest"/>.</summary>
[Flags]
public enum BlockRequestFlags : byte
{
    /// <summary>No modifier.</summary>
    None = 0,
    /// <summary>Write: durable before it completes (RWF_DSYNC, NBD_CMD_FLAG_FUA); used when the guest turned the write cache off.</summary>
    Fua = 1,
    /// <summary>WriteZeroes: the storage may deallocate the range (VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP, §5.2.6).</summary>
    Unmap = 2,
}
