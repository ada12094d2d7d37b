using VirtioSharp.Memory;

namespace VirtioSharp.Testing;

/// <summary>One device access as the queue code issued it, with what the address space answered.</summary>
/// <param name="Addr">Bus address of the first byte.</param>
/// <param name="Length">Bytes accessed (or checked).</param>
/// <param name="Access">Read or write.</param>
/// <param name="Status">What the address space answered.</param>
/// <param name="IsCheck">True for a permission check that moved no data.</param>
public readonly record struct DeviceAccess(ulong Addr, ulong Length, Access Access, MemStatus Status, bool IsCheck);
