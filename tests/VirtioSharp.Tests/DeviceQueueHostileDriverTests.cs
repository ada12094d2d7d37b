using VirtioSharp.Memory;
using VirtioSharp.Platform;
using VirtioSharp.Queues;
using VirtioSharp.Spec;
using VirtioSharp.Testing;

namespace VirtioSharp.Tests;

/// <summary>
/// The device side fed a hostile driver's rings: one test per malformed-input rule. Each asserts the queue breaks with
/// the rule's error, stays broken, writes nothing and touches nothing outside the ring and the data area.
/// </summary>
public class DeviceQueueHostileDriverTests
{
    private const DescFlags N = DescFlags.Next, W = DescFlags.Write, I = DescFlags.Indirect;

    [Fact]
    public void WellFormedChainPopsWithItsSegments()
    {
        // Control for the rig: the same writes the hostile tests use produce a valid chain when the rules are kept.
        using var rig = new HostileDriverRig();
        rig.Desc(3, rig.Data(0), 100, N, 5);
        rig.Desc(5, rig.Data(4096), 200, W);
        rig.Publish(3);
        Assert.Equal(QueueStatus.Ok, rig.Pop(out var chain));
        Assert.Equal(3, chain!.Head);
        Assert.Equal([new ChainSegment(rig.Data(0), 100, false), new ChainSegment(rig.Data(4096), 200, true)], chain.Segments.ToArray());
        Assert.Equal(QueueStatus.Empty, rig.Pop(out _));
        Assert.False(rig.Queue.IsBroken);
    }

    [Fact]
    public void AvailIdxMoreThanQueueSizeAheadBreaks()
    {
        using var rig = new HostileDriverRig(size: 8);
        for (ushort i = 0; i < 8; i++) rig.Desc(i, rig.Data(i * 64UL), 64);
        rig.Publish(0, 1, 2, 3, 4, 5, 6, 7);
        rig.SetAvailIdx(9);
        rig.AssertPopBreaks(QueueError.AvailIndexTooFarAhead);
    }

    [Fact]
    public void AvailIdxExactlyQueueSizeAheadIsAccepted()
    {
        using var rig = new HostileDriverRig(size: 8);
        for (ushort i = 0; i < 8; i++) rig.Desc(i, rig.Data(i * 64UL), 64);
        rig.Publish(0, 1, 2, 3, 4, 5, 6, 7);
        for (int i = 0; i < 8; i++) Assert.Equal(QueueStatus.Ok, rig.Pop(out _));
        Assert.Equal(QueueStatus.Empty, rig.Pop(out _));
    }

    [Fact]
    public void AvailIdxTooFarAheadAfterWrapBreaks()
    {
        // The distance is computed modulo 2^16: idx 3 seen from next_avail 0xFFFE is 5 ahead, fine for size 8;
        // idx 0xFFFD is 0xFFFF ahead, not "3 behind".
        using var rig = new HostileDriverRig(size: 8);
        rig.Queue.SetBase(0xFFFE, 0xFFFE);
        rig.SetAvailIdx(0xFFFD);
        rig.AssertPopBreaks(QueueError.AvailIndexTooFarAhead);
    }

    [Fact]
    public void HeadMadeAvailableAgainWhileInFlightBreaks()
    {
        using var rig = new HostileDriverRig(size: 8);
        rig.Desc(2, rig.Data(0), 64, W);
        rig.Publish(2, 2);
        Assert.Equal(QueueStatus.Ok, rig.Pop(out var first));
        Assert.Equal(2, first!.Head);
        rig.AssertPopBreaks(QueueError.BufferIdInUse);
    }

    [Fact]
    public void HeadMadeAvailableAgainAfterItWasUsedIsAccepted()
    {
        using var rig = new HostileDriverRig(size: 8);
        rig.Desc(2, rig.Data(0), 64, W);
        rig.Publish(2);
        Assert.Equal(QueueStatus.Ok, rig.Pop(out var first));
        Assert.Equal(QueueStatus.Ok, rig.Queue.AddUsed(first!, 64));
        rig.Publish(2);
        Assert.Equal(QueueStatus.Ok, rig.Pop(out var again));
        Assert.Equal(2, again!.Head);
        Assert.False(rig.Queue.IsBroken);
    }

    [Fact]
    public void HeadOutOfRangeBreaks()
    {
        using var rig = new HostileDriverRig(size: 8);
        rig.Publish(8);
        rig.AssertPopBreaks(QueueError.HeadOutOfRange);
    }

    [Fact]
    public void ChainRevisitingDescriptorsBreaksAsLoop()
    {
        using var rig = new HostileDriverRig(size: 8);
        rig.Desc(0, rig.Data(0), 16, N, 1);
        rig.Desc(1, rig.Data(16), 16, N, 2);
        rig.Desc(2, rig.Data(32), 16, N, 0);
        rig.Publish(0);
        rig.AssertPopBreaks(QueueError.ChainLoop);
        // Bounded: no more descriptor reads than the table has entries (plus the head).
        Assert.InRange(rig.Log.Touched.Count(a => a.Addr >= rig.Layout.Desc && a.Addr < rig.Layout.Desc + 8 * 16UL), 1, 9);
    }

    [Fact]
    public void SelfLinkedDescriptorBreaksAsLoop()
    {
        using var rig = new HostileDriverRig(size: 4);
        rig.Desc(2, rig.Data(0), 16, N, 2);
        rig.Publish(2);
        rig.AssertPopBreaks(QueueError.ChainLoop);
    }

    [Fact]
    public void LoopInsideIndirectTableBreaks()
    {
        using var rig = new HostileDriverRig(size: 8);
        rig.TableDesc(8192, 0, rig.Data(0), 16, N, 1);
        rig.TableDesc(8192, 1, rig.Data(16), 16, N, 0);
        rig.Desc(0, rig.Data(8192), 32, I);
        rig.Publish(0);
        rig.AssertPopBreaks(QueueError.ChainLoop);
    }

    [Fact]
    public async Task PopOfLoopingChainReturnsPromptly()
    {
        // A large queue whose every descriptor links on: a naive walk would spin until it happened to revisit head.
        using var rig = new HostileDriverRig(size: 1024, options: new QueueOptions { MaxChainLength = 1 << 20 });
        for (int i = 0; i < 1024; i++) rig.Desc(i, rig.Data(0), 8, N, (ushort)((i + 1) % 1024));
        rig.Publish(0);
        var pop = Task.Run(() => rig.Pop(out _));
        var first = await Task.WhenAny(pop, Task.Delay(TimeSpan.FromSeconds(10)));
        Assert.True(first == pop, "Pop did not return");
        Assert.Equal(QueueStatus.Broken, await pop);
        Assert.Equal(QueueError.ChainLoop, rig.Queue.Error);
        Assert.InRange(rig.Log.Entries.Count(a => !a.IsCheck && a.Length == VirtqDesc.Size), 1, 1024);
    }

    [Fact]
    public void NextOutOfRangeBreaks()
    {
        using var rig = new HostileDriverRig(size: 8);
        rig.Desc(0, rig.Data(0), 16, N, 8);
        rig.Publish(0);
        rig.AssertPopBreaks(QueueError.NextOutOfRange);
    }

    [Fact]
    public void NextBeyondIndirectTableBreaks()
    {
        using var rig = new HostileDriverRig(size: 8);
        rig.TableDesc(8192, 0, rig.Data(0), 16, N, 2);   // the table has 2 entries
        rig.TableDesc(8192, 1, rig.Data(16), 16);
        rig.Desc(0, rig.Data(8192), 32, I);
        rig.Publish(0);
        rig.AssertPopBreaks(QueueError.NextOutOfRange);
    }

    [Fact]
    public void NestedIndirectBreaks()
    {
        using var rig = new HostileDriverRig();
        rig.TableDesc(8192, 0, rig.Data(12288), 16, I);
        rig.TableDesc(12288, 0, rig.Data(0), 16);
        rig.Desc(0, rig.Data(8192), 16, I);
        rig.Publish(0);
        rig.AssertPopBreaks(QueueError.NestedIndirect);
    }

    [Fact]
    public void IndirectWithNextBreaks()
    {
        using var rig = new HostileDriverRig();
        rig.TableDesc(8192, 0, rig.Data(0), 16);
        rig.Desc(0, rig.Data(8192), 16, I | N, 1);
        rig.Desc(1, rig.Data(16), 16);
        rig.Publish(0);
        rig.AssertPopBreaks(QueueError.IndirectWithNext);
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(8u)]
    [InlineData(24u)]
    [InlineData(17u)]
    public void IndirectLengthNotNonZeroMultipleOf16Breaks(uint len)
    {
        using var rig = new HostileDriverRig();
        rig.TableDesc(8192, 0, rig.Data(0), 16);
        rig.TableDesc(8192, 1, rig.Data(16), 16);
        rig.Desc(0, rig.Data(8192), len, I);
        rig.Publish(0);
        rig.AssertPopBreaks(QueueError.IndirectBadLength);
    }

    [Fact]
    public void IndirectNotAtHeadBreaks()
    {
        using var rig = new HostileDriverRig();
        rig.TableDesc(8192, 0, rig.Data(0), 16);
        rig.Desc(0, rig.Data(16), 16, N, 1);
        rig.Desc(1, rig.Data(8192), 16, I);
        rig.Publish(0);
        rig.AssertPopBreaks(QueueError.IndirectNotAtHead);
    }

    [Fact]
    public void ReadableAfterWritableBreaks()
    {
        using var rig = new HostileDriverRig();
        rig.Desc(0, rig.Data(0), 16, W | N, 1);
        rig.Desc(1, rig.Data(16), 16);
        rig.Publish(0);
        rig.AssertPopBreaks(QueueError.ReadableAfterWritable);
    }

    [Fact]
    public void ReadableAfterWritableInsideIndirectTableBreaks()
    {
        using var rig = new HostileDriverRig();
        rig.TableDesc(8192, 0, rig.Data(0), 16, W | N, 1);
        rig.TableDesc(8192, 1, rig.Data(16), 16);
        rig.Desc(0, rig.Data(8192), 32, I);
        rig.Publish(0);
        rig.AssertPopBreaks(QueueError.ReadableAfterWritable);
    }

    [Fact]
    public void ChainOverFourGiBBreaks()
    {
        // 65 descriptors each covering all 64 MiB of RAM: every one is individually valid, together 4 GiB + 64 MiB.
        const ulong ram = 64UL << 20;
        using var rig = new HostileDriverRig(size: 128, platform: new SimPlatformOptions { RamSize = ram, BouncePoolSize = 0 });
        for (int i = 0; i < 65; i++) rig.Desc(i, 0, (uint)ram, i < 64 ? N : DescFlags.None, (ushort)(i + 1));
        rig.Publish(0);
        rig.AssertPopBreaks(QueueError.ChainTooManyBytes);
    }

    [Fact]
    public void ChainJustUnderFourGiBPops()
    {
        const ulong ram = 64UL << 20;
        using var rig = new HostileDriverRig(size: 128, platform: new SimPlatformOptions { RamSize = ram, BouncePoolSize = 0 });
        for (int i = 0; i < 63; i++) rig.Desc(i, 0, (uint)ram, N, (ushort)(i + 1));
        rig.Desc(63, 0, (uint)ram - 1);
        rig.Publish(0);
        Assert.Equal(QueueStatus.Ok, rig.Pop(out var chain));
        Assert.Equal((1UL << 32) - 1, chain!.ReadableBytes);
    }

    [Fact]
    public void BufferOutsideRamIsRefused()
    {
        using var rig = new HostileDriverRig();
        ulong ramEnd = rig.Platform.Options.RamSize;
        rig.Desc(0, rig.Data(0), 16, N, 1);
        rig.Desc(1, ramEnd - 8, 16, W);   // straddles the end of RAM
        rig.Publish(0);
        rig.AssertPopBreaks(QueueError.AddressRefused);
        Assert.Contains(MemStatus.Unmapped.Describe(), rig.Queue.ErrorDetail);
        Assert.DoesNotContain(rig.Log.Touched, a => a.Addr + a.Length > ramEnd - 8 && a.Addr < ramEnd + 8);
    }

    [Fact]
    public void UnmappedIovaIsRefusedAndTheFaultLogged()
    {
        using var rig = new HostileDriverRig(iommu: true);
        ulong iova = rig.Data(HostileDriverRig.DataBytes) + 16 * 4096;   // inside the aperture, never mapped
        rig.Desc(0, iova, 64);
        rig.Publish(0);
        rig.AssertPopBreaks(QueueError.AddressRefused);
        var fault = Assert.Single(rig.Platform.Iommu!.Faults);
        Assert.Equal(new IommuFault(rig.Device.Name, iova, Access.Read, MemStatus.TranslationFault), fault);
    }

    [Fact]
    public void WriteToReadOnlyIommuMappingIsRefusedWithPermissionFault()
    {
        using var rig = new HostileDriverRig(iommu: true);
        ulong page = rig.Platform.Allocator.Allocate(4096);
        ulong iova = rig.Bus(page);
        rig.Device.Domain!.MapPage(iova, page, Access.Read);

        // Reading it is fine...
        rig.Desc(0, iova, 128);
        rig.Publish(0);
        Assert.Equal(QueueStatus.Ok, rig.Pop(out var chain));
        rig.Queue.AddUsed(chain!, 0);
        rig.Log.Clear();

        // ...writing it is not.
        rig.Desc(1, iova, 128, W);
        rig.Publish(1);
        rig.AssertPopBreaks(QueueError.AddressRefused);
        var fault = Assert.Single(rig.Platform.Iommu!.Faults);
        Assert.Equal(MemStatus.PermissionFault, fault.Reason);
        Assert.Equal(Access.Write, fault.Access);
        Assert.Equal(iova, fault.Iova);
    }

    [Fact]
    public void PrivatePageOnProtectedPlatformIsRefused()
    {
        using var rig = new HostileDriverRig(platform: new SimPlatformOptions
        {
            RamSize = 4UL << 20, BouncePoolSize = 0, Protection = ProtectionMode.Fault,
        });
        ulong secret = rig.Platform.Allocator.Allocate(4096);   // never shared
        rig.Desc(0, rig.Data(0), 16, N, 1);
        rig.Desc(1, secret, 64);
        rig.Publish(0);
        rig.AssertPopBreaks(QueueError.AddressRefused);
        Assert.Contains(MemStatus.ProtectedPage.Describe(), rig.Queue.ErrorDetail);
        Assert.True(rig.Platform.Protection!.Violations > 0);
        Assert.DoesNotContain(rig.Log.Touched, a => a.Addr < secret + 4096 && a.Addr + a.Length > secret);
    }

    [Fact]
    public void RingThatTheDeviceCannotReachBreaksWithRingAccessFault()
    {
        using var rig = new HostileDriverRig(iommu: true);
        rig.Device.Domain!.UnmapPage(rig.Layout.Avail & ~4095UL);
        rig.Device.Domain.InvalidateAll();
        rig.AssertPopBreaks(QueueError.RingAccessFault);
        Assert.Contains(rig.Platform.Iommu!.Faults, f => f.Reason == MemStatus.TranslationFault);
    }

    [Fact]
    public void ChainLongerThanMaxChainLengthBreaks()
    {
        using var rig = new HostileDriverRig(size: 8, options: new QueueOptions { MaxChainLength = 4 });
        for (int i = 0; i < 5; i++) rig.Desc(i, rig.Data(16UL * (ulong)i), 16, i < 4 ? N : DescFlags.None, (ushort)(i + 1));
        rig.Publish(0);
        rig.AssertPopBreaks(QueueError.ChainTooLong);
    }

    [Fact]
    public void ChainOfExactlyMaxChainLengthPops()
    {
        using var rig = new HostileDriverRig(size: 8, options: new QueueOptions { MaxChainLength = 4 });
        for (int i = 0; i < 4; i++) rig.Desc(i, rig.Data(16UL * (ulong)i), 16, i < 3 ? N : DescFlags.None, (ushort)(i + 1));
        rig.Publish(0);
        Assert.Equal(QueueStatus.Ok, rig.Pop(out var chain));
        Assert.Equal(4, chain!.Count);
    }

    [Fact]
    public void IndirectTableLongerThanMaxChainLengthBreaks()
    {
        using var rig = new HostileDriverRig(size: 8, options: new QueueOptions { MaxChainLength = 4 });
        for (int i = 0; i < 5; i++) rig.TableDesc(8192, i, rig.Data(16UL * (ulong)i), 16, i < 4 ? N : DescFlags.None, (ushort)(i + 1));
        rig.Desc(0, rig.Data(8192), 5 * 16, I);
        rig.Publish(0);
        rig.AssertPopBreaks(QueueError.ChainTooLong);
    }

    [Fact]
    public void HeadMadeAvailableWithEveryHeadInFlightBreaks()
    {
        using var rig = new HostileDriverRig(size: 4);
        for (ushort h = 0; h < 4; h++) rig.Desc(h, rig.Data(16UL * h), 16);
        rig.Publish(0, 1, 2, 3);
        for (int i = 0; i < 4; i++) Assert.Equal(QueueStatus.Ok, rig.Pop(out _));
        Assert.Equal(4, rig.Queue.InFlight);
        rig.Publish(0);
        rig.Log.Clear();
        var st = rig.Pop(out var chain);
        Assert.Equal(QueueStatus.Broken, st);
        Assert.Null(chain);
        Assert.Equal(QueueError.TooManyInFlight, rig.Queue.Error);
        Assert.Empty(rig.Log.Writes);
        Assert.Equal(QueueStatus.Broken, rig.Pop(out _));
    }

    [Fact]
    public void FirstCompletionAfterSetBaseInterruptsEvenIfUsedEventIsBehind()
    {
        // A vhost-user back-end was killed after publishing used entries 8 and 9 but before signalling them: the
        // driver's used_event stays at 8 while the restarted back-end resumes at used idx 10. With EVENT_IDX alone
        // (need_event(8, 11, 10) is false) no completion would ever interrupt again and the guest hangs.
        using var rig = new HostileDriverRig(size: 8, options: new QueueOptions { EventIdx = true });
        for (ushort i = 0; i < 8; i++) rig.Desc(i, rig.Data(i * 64UL), 64, DescFlags.Write);
        Span<byte> ev = stackalloc byte[2];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(ev, 8);
        Assert.Equal(MemStatus.Ok, rig.Platform.Ram.Write(rig.AvailGpa + 4 + 2UL * rig.Size, ev));   // used_event
        rig.Queue.SetBase(10, 10);
        rig.SetAvailIdx(10);
        rig.Publish(0);
        Assert.Equal(QueueStatus.Ok, rig.Pop(out var chain));
        Assert.Equal(QueueStatus.Ok, rig.Queue.AddUsed(chain!, 0));
        Assert.True(rig.Queue.NeedsInterrupt());
        // Afterwards suppression works as usual: used_event 8 asks for nothing more.
        rig.Publish(1);
        Assert.Equal(QueueStatus.Ok, rig.Pop(out chain));
        Assert.Equal(QueueStatus.Ok, rig.Queue.AddUsed(chain!, 0));
        Assert.False(rig.Queue.NeedsInterrupt());
    }

    [Fact]
    public void BrokenQueueStaysBrokenUntilReset()
    {
        using var rig = new HostileDriverRig(size: 8);
        rig.Desc(0, rig.Data(0), 16);
        rig.Publish(8);
        rig.AssertPopBreaks(QueueError.HeadOutOfRange);

        // The driver repairs the ring: a broken queue does not look again.
        rig.SetAvailIdx(0);
        rig.Publish(0);
        Assert.Equal(QueueStatus.Broken, rig.Pop(out _));
        Assert.False(rig.Queue.EnableNotifications());
        Assert.False(rig.Queue.NeedsInterrupt());

        rig.Queue.Reset();
        Assert.False(rig.Queue.IsBroken);
        Assert.Equal(QueueError.None, rig.Queue.Error);
        Assert.Null(rig.Queue.ErrorDetail);
        Assert.Equal(QueueStatus.Ok, rig.Pop(out var chain));
        Assert.Equal(0, chain!.Head);
        Assert.Equal(QueueStatus.Ok, rig.Queue.AddUsed(chain, 0));
    }

    [Fact]
    public void ChainsInFlightWhenTheQueueBreaksCanStillBeReturnedButNothingIsPublished()
    {
        using var rig = new HostileDriverRig(size: 8);
        rig.Desc(0, rig.Data(0), 16, W);
        rig.Publish(0, 8);
        Assert.Equal(QueueStatus.Ok, rig.Pop(out var chain));
        rig.AssertPopBreaks(QueueError.HeadOutOfRange);
        rig.Log.Clear();
        Assert.Equal(QueueStatus.Broken, rig.Queue.AddUsed(chain!, 16));
        Assert.Empty(rig.Log.Writes);
        Assert.Equal(0, rig.Queue.InFlight);
    }
}
