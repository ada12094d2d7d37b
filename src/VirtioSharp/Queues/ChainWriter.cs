using VirtioSharp.Memory;

namespace VirtioSharp.Queues;

/// <summary>Writes into a chain's writable bytes in order and counts them for the used length.</summary>
public ref struct ChainWriter<TMem> where TMem : struct, IDeviceMemory
{
    private readonly TMem _mem;
    private readonly ReadOnlySpan<ChainSegment> _segs;
    private int _seg;
    private uint _offset;

    /// <summary>A writer over <paramref name="chain"/>'s writable segments, accessed through <paramref name="mem"/>.</summary>
    public ChainWriter(TMem mem, DescriptorChain chain)
    {
        _mem = mem;
        _segs = chain.Writable;
    }

    /// <summary>Bytes written so far: the value for the used element's len.</summary>
    public uint Written { get; private set; }

    /// <summary>Writes as much of <paramref name="src"/> as the chain has room for; <paramref name="written"/> says how much.</summary>
    public MemStatus Write(scoped ReadOnlySpan<byte> src, out int written)
    {
        written = 0;
        while (!src.IsEmpty && _seg < _segs.Length)
        {
            var s = _segs[_seg];
            uint left = s.Length - _offset;
            if (left == 0) { _seg++; _offset = 0; continue; }
            int n = (int)Math.Min(left, (uint)src.Length);
            var st = _mem.Write(s.Addr + _offset, src[..n]);
            if (st != MemStatus.Ok) return st;
            src = src[n..];
            written += n;
            _offset += (uint)n;
            Written += (uint)n;
        }
        return MemStatus.Ok;
    }
}
