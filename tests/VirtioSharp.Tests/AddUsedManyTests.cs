using System.Buffers.Binary;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;
using VirtioSharp.Testing;

namespace VirtioSharp.Tests;

/// <summary>
/// DeviceQueue.AddUsedMany (virtio-net's merged receive buffers): every used element is written before one used-idx
/// store publishes them all, so a driver never sees the first buffer of a frame without the rest; a chain named twice
/// is refused before anything is written.
/// </summary>
public class AddUsedManyTests
{
    [Fact]
    public void ElementsFirstThenOneUsedIdxStore()
    {
        using var rig = new HostileDriverRig(size: 8);
        for (ushort i = 0; i < 3; i++) rig.Desc(i, rig.Data(i * 256UL), 256, DescFlags.Write);
        rig.Publish(0, 1, 2);
        var chains = new DescriptorChain[3];
        for (int i = 0; i < 3; i++) Assert.Equal(QueueStatus.Ok, rig.Pop(out chains[i]!));
        rig.Log.Clear();
        Assert.Equal(QueueStatus.Ok, rig.Queue.AddUsedMany(chains, [256, 256, 40]));
        var writes = rig.Log.Writes.ToList();
        ulong usedIdx = rig.Layout.UsedIdxAddr;
        Assert.Single(writes, w => w.Addr == usedIdx);
        Assert.Equal(usedIdx, writes[^1].Addr);
        Assert.Equal(3, writes.Count(w => w.Addr >= rig.Layout.UsedRingAddr(0) && w.Addr < rig.Layout.UsedRingAddr(3)));
        var used = new byte[4 + 3 * 8];
        rig.Platform.Cpu.Read(rig.UsedGpa, used);
        Assert.Equal(3, BinaryPrimitives.ReadUInt16LittleEndian(used.AsSpan(2)));
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal((uint)i, BinaryPrimitives.ReadUInt32LittleEndian(used.AsSpan(4 + 8 * i)));
            Assert.Equal(i == 2 ? 40u : 256u, BinaryPrimitives.ReadUInt32LittleEndian(used.AsSpan(8 + 8 * i)));
        }
        Assert.Equal(0, rig.Queue.InFlight);
    }

    [Fact]
    public void AChainNamedTwiceIsRefusedBeforeAnythingIsWritten()
    {
        using var rig = new HostileDriverRig(size: 8);
        for (ushort i = 0; i < 2; i++) rig.Desc(i, rig.Data(i * 256UL), 256, DescFlags.Write);
        rig.Publish(0, 1);
        Assert.Equal(QueueStatus.Ok, rig.Pop(out var a));
        Assert.Equal(QueueStatus.Ok, rig.Pop(out var b));
        rig.Log.Clear();
        Assert.Throws<VirtqueueException>(() => rig.Queue.AddUsedMany([a!, b!, a!], [1, 1, 1]));
        Assert.Throws<VirtqueueException>(() => rig.Queue.AddUsedMany([a!, b!], [1, 257]));   // more than b holds
        Assert.Empty(rig.Log.Writes);
        Assert.Equal(2, rig.Queue.InFlight);
        Assert.Equal(QueueStatus.Ok, rig.Queue.AddUsedMany([a!, b!], [1, 2]));   // both still usable, once
        Assert.Equal(0, rig.Queue.InFlight);
    }
}
