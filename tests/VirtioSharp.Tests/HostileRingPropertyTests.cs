using CsCheck;
using VirtioSharp.Queues;
using VirtioSharp.Spec;
using VirtioSharp.Tests.Support;

namespace VirtioSharp.Tests;

/// <summary>
/// Random garbage rings: whatever a driver writes, Pop terminates with a bounded number of accesses, only ever reaches
/// the ring and the data area, returns only chains that obey the rules, and once broken stays broken.
/// </summary>
public class HostileRingPropertyTests
{
    public sealed record RawDesc(bool Outside, int Offset, int Len, int Flags, int Next);

    public sealed record Garbage(RawDesc[] Descs, ushort[] Avail, ushort AvailIdx, int MaxChain, byte[] DataSeed)
    {
        public override string ToString() =>
            $"max={MaxChain} idx={AvailIdx} avail=[{string.Join(',', Avail)}] descs={string.Join(' ', Descs.Select(d => $"({(d.Outside ? "out" : "in")}+{d.Offset},{d.Len},f{d.Flags},n{d.Next})"))}";
    }

    private const ushort Size = 8;

    private static readonly Gen<RawDesc> GenDesc = Gen.Select(
        Gen.Int[0, 9].Select(x => x == 0), Gen.Int[0, 16], Gen.OneOf<int>(Gen.Int[0, 64], Gen.Int[0, 4096]), Gen.Int[0, 7], Gen.Int[0, 9],
        (o, off, len, f, n) => new RawDesc(o, off * 256, len, f, n));

    private static readonly Gen<Garbage> GenGarbage = Gen.Select(
        GenDesc.Array[Size], Gen.Int[0, 9].Select(x => (ushort)x).Array[Size],
        Gen.OneOf<ushort>(Gen.Int[0, 12].Select(x => (ushort)x), Gen.UShort), Gen.OneOf(3, 16, 1024), Gen.Byte.Array[64],
        (d, a, idx, max, seed) => new Garbage(d, a, idx, max, seed));

    [Fact]
    public void PopOnGarbageRingsIsBoundedConfinedAndSticky()
    {
        int broken = 0, popped = 0;
        GenGarbage.Sample(g =>
        {
            var (b, p) = Run(g);
            Interlocked.Add(ref broken, b);
            Interlocked.Add(ref popped, p);
        }, iter: 3000, print: g => g.ToString());
        // The generator reaches both outcomes, so the assertions above were exercised on each.
        Assert.True(broken > 100, $"{broken} broken");
        Assert.True(popped > 100, $"{popped} popped");
    }

    private static (int Broken, int Popped) Run(Garbage g)
    {
        using var rig = new HostileDriverRig(Size, new QueueOptions { MaxChainLength = g.MaxChain });
        // The data area is garbage too, so indirect tables are random descriptors.
        var fill = new byte[HostileDriverRig.DataBytes];
        for (int i = 0; i < fill.Length; i++) fill[i] = (byte)(g.DataSeed[i % g.DataSeed.Length] * 131 + (i >> 6));
        rig.Platform.Ram.Write(rig.DataGpa, fill);
        for (int i = 0; i < Size; i++)
        {
            var d = g.Descs[i];
            ulong addr = d.Outside ? rig.Platform.Options.RamSize + (ulong)d.Offset : rig.Data((ulong)d.Offset);
            rig.Desc(i, addr, (uint)d.Len, (DescFlags)d.Flags, (ushort)d.Next);
        }
        rig.Publish(g.Avail);
        rig.SetAvailIdx(g.AvailIdx);

        int popped = 0;
        for (int attempt = 0; attempt < 2 * Size + 2; attempt++)
        {
            var st = rig.Pop(out var chain);
            if (st == QueueStatus.Empty) break;
            if (st == QueueStatus.Broken)
            {
                Assert.NotEqual(QueueError.None, rig.Queue.Error);
                var err = rig.Queue.Error;
                Assert.Equal(QueueStatus.Broken, rig.Pop(out _));
                Assert.Equal(err, rig.Queue.Error);
                break;
            }
            Assert.Equal(QueueStatus.Ok, st);
            popped++;
            var c = chain!;
            Assert.InRange(c.Count, 1, g.MaxChain);
            Assert.True(c.Head < Size);
            Assert.True(c.ReadableBytes + c.WritableBytes <= uint.MaxValue);
            bool sawWritable = false;
            foreach (var s in c.Segments)
            {
                Assert.False(sawWritable && !s.Writable, "readable segment after a writable one");
                sawWritable |= s.Writable;
                Assert.True(s.Length == 0 || (s.Addr >= rig.Data() && s.Addr + s.Length <= rig.Data(HostileDriverRig.DataBytes)),
                    $"segment 0x{s.Addr:x}+{s.Length} outside the data area");
            }
            Assert.Equal(QueueStatus.Ok, rig.Queue.AddUsed(c, 0));
        }

        rig.Log.AssertTouchedOnlyWithin(rig.AllowedBusRanges);
        Assert.All(rig.Log.Writes, w => Assert.True(w.Addr >= rig.Layout.Used && w.Addr < rig.Layout.Used + SplitRingLayout.UsedBytes(Size)));
        // Bounded work: each pop reads at most its chain (direct plus one indirect table) and a few ring fields.
        Assert.True(rig.Log.Entries.Count <= (2 * Size + 2) * (2 * Math.Min(g.MaxChain, 1024) + Size + 8), $"{rig.Log.Entries.Count} accesses");
        return (rig.Queue.IsBroken ? 1 : 0, popped);
    }
}
