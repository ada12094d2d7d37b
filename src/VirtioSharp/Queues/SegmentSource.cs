using VirtioSharp.Dma;

namespace VirtioSharp.Queues;

/// <summary>Guest buffers the queue maps through the device's DMA ops for this chain and unmaps when it is used.</summary>
internal readonly ref struct SegmentSource(ReadOnlySpan<BufferSegment> readable, ReadOnlySpan<BufferSegment> writable) : IChainSource
{
    private readonly ReadOnlySpan<BufferSegment> _readable = readable, _writable = writable;
    public int Readable => _readable.Length;
    public int Total => _readable.Length + _writable.Length;
    public bool Premapped => false;
    public DmaStatus Map(IDmaOps dma, ref DmaMapping[]? maps, out uint writableBytes) =>
        ChainMapping.MapAll(dma, _readable, _writable, ref maps, out writableBytes);
}
