namespace VirtioSharp.Devices.Block;

/// <summary>Storage behind a virtio-blk device. Offsets and lengths are checked by the device before calling.</summary>
public interface IBlockBackend : IDisposable
{
    ulong Size { get; }
    bool ReadOnly { get; }
    void Read(ulong offset, Span<byte> destination);
    void Write(ulong offset, ReadOnlySpan<byte> source);
    void Flush();
    /// <summary>Drops data (reads back as zeros afterwards here, which the spec allows).</summary>
    void Discard(ulong offset, ulong length);
    void WriteZeroes(ulong offset, ulong length);
}
