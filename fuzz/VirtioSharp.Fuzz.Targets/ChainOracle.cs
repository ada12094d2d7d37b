using VirtioSharp.Memory;
using VirtioSharp.Queues;

namespace VirtioSharp.Fuzz.Targets;

/// <summary>What every device may rely on for a chain it popped, checked the same way by every ring target.</summary>
internal static class ChainOracle
{
    /// <summary>Sizes add up, the length limit holds, every byte was reachable at pop and still reads.</summary>
    public static void Check(GuestMemory memory, DescriptorChain chain, QueueOptions opts, Span<byte> scratch)
    {
        var segs = chain.Segments;
        Invariant.That(segs.Length == chain.Readable.Length + chain.Writable.Length, "segments are not readable + writable");
        Invariant.That(segs.Length >= 1, "a chain without descriptors");
        ulong r = 0, w = 0;
        foreach (var s in chain.Readable) r += s.Length;
        foreach (var s in chain.Writable) w += s.Length;
        Invariant.That(r == chain.ReadableBytes && w == chain.WritableBytes, $"byte counts {chain.ReadableBytes}/{chain.WritableBytes} but segments add to {r}/{w}");
        Invariant.That(r + w <= uint.MaxValue, "chain longer than 4 GiB");
        foreach (var s in segs)
            Invariant.That(s.Length == 0 || memory.IsBacked(s.Addr, s.Length), $"segment 0x{s.Addr:x}+{s.Length} is not backed");
        Invariant.That(segs.Length <= opts.MaxChainLength, $"chain of {segs.Length} descriptors past the {opts.MaxChainLength} limit");
        var reader = new ChainReader<DeviceMemory<IdentityTranslate, RamPort>>(new(default, new RamPort(memory)), chain);
        var st = reader.Read(scratch, out int got);
        Invariant.That(st == MemStatus.Ok, $"reading a popped chain failed: {st}");
        Invariant.That((ulong)got == Math.Min(chain.ReadableBytes, (ulong)scratch.Length), $"read {got} of {chain.ReadableBytes} readable bytes");
    }

    /// <summary>Writes up to <paramref name="want"/> × 16 bytes into the chain through <paramref name="mem"/>; returns what was written.</summary>
    public static uint Fill<TMem>(TMem mem, DescriptorChain chain, byte want, Span<byte> scratch) where TMem : struct, IDeviceMemory
    {
        int n = (int)Math.Min((ulong)want * 16, Math.Min(chain.WritableBytes, (ulong)scratch.Length));
        scratch[..n].Fill(0xA5);
        var writer = new ChainWriter<TMem>(mem, chain);
        var st = writer.Write(scratch[..n], out int wrote);
        Invariant.That(st == MemStatus.Ok && wrote == n, $"writing {n} bytes into a popped chain: {st}, {wrote} written");
        return writer.Written;
    }
}
