namespace VirtioSharp.Devices.Block;

/// <summary>Storage behind a virtio-blk device. Offsets and lengths are checked by the device before calling.</summary>
public interface IBlockBackend : IDisposable
{
    /// <summary>Capacity in bytes.</summary>
    ulong Size { get; }
    /// <summary>Whether writes are refused; the device then offers VIRTIO_BLK_F_RO.</summary>
    bool ReadOnly { get; }
    /// <summary>Reads <paramref name="destination"/>.Length bytes at <paramref name="offset"/>.</summary>
    void Read(ulong offset, Span<byte> destination);
    /// <summary>Writes <paramref name="source"/> at <paramref name="offset"/>.</summary>
    void Write(ulong offset, ReadOnlySpan<byte> source);
    /// <summary>Makes completed writes durable (VIRTIO_BLK_T_FLUSH).</summary>
    void Flush();
    /// <summary>Drops data (reads back as zeros afterwards here, which the spec allows).</summary>
    void Discard(ulong offset, ulong length);
    /// <summary>Makes the range read back as zeros (VIRTIO_BLK_T_WRITE_ZEROES).</summary>
    void WriteZeroes(ulong offset, ulong length);
}
