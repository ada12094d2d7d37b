using VirtioSharp.Memory;

namespace VirtioSharp.Tests.Support;

/// <summary>One device access as the queue code issued it, with what the address space answered.</summary>
public readonly record struct DeviceAccess(ulong Addr, ulong Length, Access Access, MemStatus Status, bool IsCheck);
