using VirtioSharp.Dma;

namespace VirtioSharp.Queues;

/// <summary>Mappings the driver made once with the device's DMA ops (a premapped pool) and keeps across chains.</summary>
internal readonly ref struct PremappedSource(ReadOnlySpan<DmaMapping> readable, ReadOnlySpan<DmaMapping> writable) : IChainSource
{
    private readonly ReadOnlySpan<DmaMapping> _readable = readable, _writable = writable;
    public int Readable => _readable.Length;
    public int Total => _readable.Length + _writable.Length;
    public bool Premapped => true;
    public DmaStatus Map(IDmaOps dma, ref DmaMapping[]? maps, out uint writableBytes) =>
        ChainMapping.UsePremapped(dma, _readable, _writable, ref maps, out writableBytes);
}
